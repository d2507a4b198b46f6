//! Reverse only on proof, through the real providers' fakes, and Adyen's seller payouts
//! (Transfers API). A refund whose creation is answered 401 after the provider made it ends
//! `succeeded`, made once; one the provider never made fails at Stripe (its refunds of the
//! PaymentIntent hold none with our id) and, at Adyen (which cannot be asked), stays pending and
//! is sent again with the same key until made, once. Adyen payouts: an internal transfer to the
//! seller's balance account, `paid` by its `balancePlatform.transfer.updated` webhook (or by its
//! status when the webhook is lost), `failed` when refused; a 401 after the effect does not
//! reverse it; one never made is reversed into the wallet; a forged or unsigned transfer webhook is
//! refused.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferropay::psp::MadeByKey;
use ferropay::psp::registry::Routing;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::connectors::{Psp, rig, rig_with};
use crate::fakes::adyen;
use crate::helpers::*;

/// Declares `name(db, psp)` for Stripe and Adyen, each on SQLite and PostgreSQL.
#[macro_export]
macro_rules! stripe_and_adyen {
    ($($name:ident),+ $(,)?) => {
        $crate::stripe_and_adyen!(@psp via_stripe Stripe $($name),+);
        $crate::stripe_and_adyen!(@psp via_adyen Adyen $($name),+);
    };
    (@psp $module:ident $psp:ident $($name:ident),+) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(
                            $crate::helpers::Db::Sqlite,
                            $crate::connectors::Psp::$psp,
                        )
                        .await
                    }
                )+
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(
                            $crate::helpers::Db::Postgres,
                            $crate::connectors::Psp::$psp,
                        )
                        .await
                    }
                )+
            }
        }
    };
}

/// How many refunds the provider holds for our refund id.
fn made_at_provider(rig: &crate::connectors::Rig, refund_id: &str) -> usize {
    match rig.psp {
        Psp::Stripe => rig.stripe.refunds_for(refund_id),
        _ => rig.adyen.refunds_for(refund_id),
    }
}

async fn refunds_are_failed_only_on_proof(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    let faults = match psp {
        Psp::Stripe => &rig.stripe.faults,
        _ => &rig.adyen.faults,
    };
    let payment = rig.paid("chk_key_refund").await;
    let refunds = format!("/v1/payments/{}/refunds", payment["id"].as_str().unwrap());

    // Made, then answered 401: asked by key (Stripe) or told by its REFUND notification and
    // the retry's replayed answer (Adyen), it succeeds, made once.
    faults.unauthorized_after_effect.store(1, Ordering::SeqCst);
    let response = rig
        .app
        .post_keyed(
            &refunds,
            "r-after",
            &json!({"order_id": "ord_1", "amount": 500}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let after: Value = response.json().await.unwrap();
    let after_id = after["id"].as_str().unwrap();
    let done = rig.app.wait_for_item(&refunds, after_id, "succeeded").await;
    assert_eq!(done["failure_code"], Value::Null);
    assert_eq!(made_at_provider(&rig, after_id), 1, "made once");
    assert_eq!(rig.app.wallet("seller_a", "USD").await, (1000, 1000));
    assert_eq!(rig.receivable().await, 1250);

    // Refused before any effect.
    faults.unauthorized_before_effect.store(1, Ordering::SeqCst);
    let response = rig
        .app
        .post_keyed(&refunds, "r-before", &json!({"order_id": "ord_2"}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let before: Value = response.json().await.unwrap();
    let before_id = before["id"].as_str().unwrap();
    match psp {
        Psp::Stripe => {
            // The intent's refunds hold none with our id: proof it was never made.
            let failed = rig.app.wait_for_item(&refunds, before_id, "failed").await;
            assert_eq!(failed["failure_code"], "psp_rejected");
            assert_eq!(made_at_provider(&rig, before_id), 0);
            assert_eq!(rig.app.wallet("seller_b", "USD").await, (250, 250));
            assert_eq!(rig.receivable().await, 1250);
            // Asked directly: the refund made says so, with how it ended.
            let stripe = rig.app.service().connectors.of("stripe").unwrap().clone();
            let request = ferropay::psp::RefundRequest {
                refund_id: after_id.to_owned(),
                payment_token: crate::connectors::token(&payment),
                psp_reference: None,
                amount_minor: 500,
                currency: "USD".into(),
            };
            match stripe.refund_by_key(&request).await.unwrap() {
                MadeByKey::Made { psp_id, settled } => {
                    assert!(psp_id.starts_with("re_"), "{psp_id}");
                    assert!(settled.is_some_and(|s| s.succeeded));
                }
                other => panic!("{other:?}"),
            }
        }
        _ => {
            // Adyen cannot be asked: the refund is not failed on its word; sent again with the
            // same key, it is made, once.
            rig.app
                .wait_for_item(&refunds, before_id, "succeeded")
                .await;
            assert_eq!(made_at_provider(&rig, before_id), 1, "made once");
            assert_eq!(rig.app.wallet("seller_b", "USD").await, (0, 0));
            assert_eq!(rig.receivable().await, 1000);
        }
    }
    rig.ledger_clean().await;
}

crate::stripe_and_adyen!(refunds_are_failed_only_on_proof);

/// A ferropay routing payments and payouts to Adyen, seller_a's balance account registered.
async fn adyen_payout_rig(db: Db) -> Option<crate::connectors::Rig> {
    let routing = Routing {
        default: Some("adyen".into()),
        payouts: Some("adyen".into()),
        ..Routing::default()
    };
    let rig = rig_with(db, Psp::Adyen, AppOptions::default(), routing).await?;
    rig.paid("chk_adyen_payout").await;
    Some(rig)
}

impl crate::connectors::Rig {
    async fn register_account(&self, seller: &str, account: &str) -> reqwest::Response {
        self.app
            .http
            .put(format!(
                "{}/v1/sellers/{seller}/psp_accounts/adyen",
                self.app.base_url
            ))
            .bearer_auth(&self.app.api_key)
            .json(&json!({"account_id": account}))
            .send()
            .await
            .unwrap()
    }

    async fn payout(&self, seller: &str, key: &str) -> Value {
        let response = self
            .app
            .post_keyed(
                &format!("/v1/sellers/{seller}/payouts"),
                key,
                &json!({"currency": "USD"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }
}

async fn adyen_pays_sellers_out_by_transfers(db: Db) {
    let Some(rig) = adyen_payout_rig(db).await else {
        return;
    };
    let bad = rig.register_account("seller_a", "acct_1").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["field"], "account_id");
    let seller_a = "BA3227C223222B5CTBLB8QRZV";
    assert_eq!(
        rig.register_account("seller_a", seller_a).await.status(),
        StatusCode::OK
    );
    // Paid: one internal transfer to the seller's balance account, booked by webhook.
    let payout = rig.payout("seller_a", "p-a").await;
    let id = payout["id"].as_str().unwrap();
    rig.app
        .wait_for_item("/v1/sellers/seller_a/payouts", id, "paid")
        .await;
    let transfers = rig.adyen.transfers_for(id);
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0]["counterparty"]["balanceAccountId"], seller_a);
    assert_eq!(
        transfers[0]["amount"],
        json!({"value": 1500, "currency": "USD"})
    );
    assert_eq!(rig.app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(rig.app.account_sum("bank", "USD").await, -1500);
    let adyen_connector = rig.app.service().connectors.of("adyen").unwrap().clone();
    match adyen_connector.payout_by_key(id).await.unwrap() {
        MadeByKey::Made { settled, .. } => {
            assert!(settled.is_some_and(|s| s.succeeded && s.amount_minor == Some(1500)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        adyen_connector.payout_by_key("pout_never").await.unwrap(),
        MadeByKey::NotMade
    );

    // A transfer webhook forged (another key) or unsigned is refused, and changes nothing.
    let genuine = rig
        .adyen
        .webhooks
        .sent
        .lock()
        .unwrap()
        .iter()
        .find(|w| w.body.contains("balancePlatform.transfer.updated"))
        .cloned()
        .unwrap();
    let url = format!("{}/webhooks/psp/adyen", rig.app.base_url);
    let forged = rig
        .app
        .http
        .post(&url)
        .header(
            "HmacSignature",
            crate::fakes::adyen::sign_body(adyen::HMAC_KEY, genuine.body.as_bytes()),
        )
        .body(genuine.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
    let unsigned = rig
        .app
        .http
        .post(&url)
        .body(genuine.body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    let replayed = crate::fakes::deliver(&url, &genuine).await;
    assert_eq!(
        replayed, 200,
        "the genuine one again: a duplicate, accepted"
    );
    assert_eq!(rig.app.wallet("seller_a", "USD").await, (0, 0));

    // Refused by Adyen (a blocked account): failed, the money back in the wallet.
    assert_eq!(
        rig.register_account("seller_b", adyen::BLOCKED_BALANCE_ACCOUNT)
            .await
            .status(),
        StatusCode::OK
    );
    let payout = rig.payout("seller_b", "p-b").await;
    let failed = rig
        .app
        .wait_for_item(
            "/v1/sellers/seller_b/payouts",
            payout["id"].as_str().unwrap(),
            "failed",
        )
        .await;
    assert_eq!(failed["failure_code"], "counterpartyAccountBlocked");
    assert_eq!(rig.app.wallet("seller_b", "USD").await, (250, 250));
    rig.ledger_clean().await;
}

async fn adyen_payouts_are_reversed_only_on_proof(db: Db) {
    let Some(rig) = adyen_payout_rig(db).await else {
        return;
    };
    rig.register_account("seller_a", "BA3227C223222B5CTBLB8QRZV")
        .await;
    rig.register_account("seller_b", "BA32272223222B5CTBLB8QRZW")
        .await;
    // Its webhooks lost: the transfer made, then answered 401: found by its reference, not
    // reversed, paid by its status.
    rig.adyen.faults.drop_webhooks.store(true, Ordering::SeqCst);
    rig.adyen
        .faults
        .unauthorized_after_effect
        .store(1, Ordering::SeqCst);
    let payout = rig.payout("seller_a", "p-after").await;
    let id = payout["id"].as_str().unwrap();
    rig.app
        .wait_for_item("/v1/sellers/seller_a/payouts", id, "paid")
        .await;
    assert_eq!(rig.adyen.transfers_for(id).len(), 1, "paid once");
    assert_eq!(rig.app.wallet("seller_a", "USD").await, (0, 0));
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'payout_reversed'")
            .await,
        0
    );
    // Refused before any effect: no transfer with its reference, so reversed.
    rig.adyen
        .faults
        .unauthorized_before_effect
        .store(1, Ordering::SeqCst);
    let payout = rig.payout("seller_b", "p-before").await;
    let id = payout["id"].as_str().unwrap();
    let failed = rig
        .app
        .wait_for_item("/v1/sellers/seller_b/payouts", id, "failed")
        .await;
    assert_eq!(failed["failure_code"], "provider_rejected");
    assert!(rig.adyen.transfers_for(id).is_empty());
    assert_eq!(rig.app.wallet("seller_b", "USD").await, (250, 250));
    eventually(Duration::from_secs(5), "the ledger is clean", || async {
        rig.app.verify_ledger().await.ok()
    })
    .await;
}

crate::db_test!(
    adyen_pays_sellers_out_by_transfers,
    adyen_payouts_are_reversed_only_on_proof
);
