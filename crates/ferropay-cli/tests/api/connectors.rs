//! The same black-box flows through each connector — the sandbox, Stripe (at its fake) and
//! Adyen (at its fake) — on SQLite and on PostgreSQL: pay, decline, refund, a lost webhook healed
//! by the poller, webhooks sent twice and out of order applied once, and a forged or stale
//! signature refused. Each ends with `ledger verify` clean and the PSP's receivable what the flow
//! left. For the real providers also their failure modes on registration (429, 5xx, an
//! idempotency key in flight) and a restart with the registration still queued. Then what is
//! particular to one PSP: routing, 3-D Secure, Stripe Connect payouts, Stripe's async payments,
//! and each provider's settlement reconciled clean and with injected breaks reported by kind.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferropay::psp::MadeByKey;
use ferropay::psp::adyen::AdyenConfig;
use ferropay::psp::adyen::reports::AdyenReportsConfig;
use ferropay::psp::adyen::transfers::AdyenPayoutsConfig;
use ferropay::psp::config::PspSettings;
use ferropay::psp::registry::Routing;
use ferropay::psp::stripe::StripeConfig;
use ferropay::reconcile::{BreakKind, RunOptions};
use ferropay::secret::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fakes::adyen::{self, AdyenFake};
use crate::fakes::stripe::{self, StripeFake};
use crate::helpers::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Psp {
    Sandbox,
    Stripe,
    Adyen,
}

impl Psp {
    pub fn name(self) -> &'static str {
        match self {
            Self::Sandbox => "sandbox",
            Self::Stripe => "stripe",
            Self::Adyen => "adyen",
        }
    }
}

/// A ferropay with all three connectors, routing to `psp` by default.
pub struct Rig {
    pub app: TestApp,
    pub psp: Psp,
    pub stripe: Arc<StripeFake>,
    pub adyen: Arc<AdyenFake>,
}

pub fn settings(stripe: &StripeFake, adyen: &AdyenFake, routing: Routing) -> PspSettings {
    PspSettings {
        routing,
        stripe: Some(StripeConfig {
            secret_key: Secret::new(stripe::SECRET_KEY),
            webhook_secret: Secret::new(stripe::WEBHOOK_SECRET),
            api_base: stripe.base_url.clone(),
            ..StripeConfig::default()
        }),
        adyen: Some(AdyenConfig {
            api_key: Secret::new(adyen::API_KEY),
            merchant_account: adyen::MERCHANT_ACCOUNT.into(),
            hmac_key: Secret::new(adyen::HMAC_KEY),
            checkout_base: adyen.checkout_base(),
            payouts: Some(AdyenPayoutsConfig {
                transfers_base: adyen.transfers_base(),
                api_key: Secret::new(adyen::TRANSFERS_API_KEY),
                balance_account_id: adyen::PLATFORM_BALANCE_ACCOUNT.into(),
                hmac_key: Secret::new(adyen::BALANCE_PLATFORM_HMAC_KEY),
            }),
            reports: Some(AdyenReportsConfig {
                report_base: adyen.report_base(),
                api_key: Secret::new(adyen::REPORT_API_KEY),
            }),
            ..AdyenConfig::default()
        }),
    }
}

pub async fn rig_with(db: Db, psp: Psp, mut options: AppOptions, routing: Routing) -> Option<Rig> {
    let stripe = StripeFake::start().await;
    let adyen = AdyenFake::start().await;
    options.psps = settings(&stripe, &adyen, routing);
    let app = spawn_app_with(db, options).await?;
    stripe
        .webhooks
        .url
        .set(format!("{}/webhooks/psp/stripe", app.base_url))
        .unwrap();
    adyen
        .webhooks
        .url
        .set(format!("{}/webhooks/psp/adyen", app.base_url))
        .unwrap();
    Some(Rig {
        app,
        psp,
        stripe,
        adyen,
    })
}

pub async fn rig(db: Db, psp: Psp) -> Option<Rig> {
    let routing = Routing {
        default: Some(psp.name().into()),
        ..Routing::default()
    };
    rig_with(db, psp, AppOptions::default(), routing).await
}

/// The PSP's session token (the last part of the hosted page's URL).
pub fn token(payment: &Value) -> String {
    payment["redirect_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned()
}

impl Rig {
    /// Creates a payment (two sellers, 1750 USD) through the default PSP.
    pub async fn create(&self, checkout_id: &str) -> Value {
        let payment = self.app.create_payment(checkout_id).await;
        assert_eq!(payment["psp"], self.psp.name(), "{payment:#}");
        let page = payment["redirect_url"].as_str().unwrap();
        let host = match self.psp {
            Psp::Sandbox => &self.app.sandbox_url,
            Psp::Stripe => &self.stripe.base_url,
            Psp::Adyen => &self.adyen.base_url,
        };
        assert!(page.starts_with(host.as_str()), "{page} is not at {host}");
        payment
    }

    /// The buyer submits the PSP's hosted page with `fields`; answers the status.
    pub async fn submit(&self, payment: &Value, fields: &[(&str, &str)]) -> StatusCode {
        let url = payment["redirect_url"].as_str().unwrap();
        let page = self.app.http.get(url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        self.app
            .http
            .post(url)
            .form(fields)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The buyer pays with the PSP's card that pays.
    pub async fn pay(&self, payment: &Value) {
        match self.psp {
            Psp::Sandbox => {
                self.app.pay(payment, CARD_OK).await;
            }
            Psp::Stripe => {
                let status = self
                    .submit(payment, &[("card_number", stripe::CARD_OK)])
                    .await;
                assert_eq!(status, StatusCode::SEE_OTHER);
            }
            Psp::Adyen => {
                let status = self
                    .submit(
                        payment,
                        &[("card_number", adyen::CARD_OK), ("holder_name", "Ada")],
                    )
                    .await;
                assert!(status.is_redirection(), "{status}");
            }
        }
    }

    pub async fn paid(&self, checkout_id: &str) -> Value {
        let payment = self.create(checkout_id).await;
        self.pay(&payment).await;
        self.app
            .wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
            .await
    }

    pub async fn receivable(&self) -> i64 {
        self.app
            .account_sum(&format!("psp_receivable:{}", self.psp.name()), "USD")
            .await
    }

    pub async fn ledger_clean(&self) {
        let report = self.app.verify_ledger().await;
        assert!(report.ok(), "{report:?}");
    }
}

/// Pay, then refund part of one order: the seller's wallet, the payment's status and the PSP's
/// receivable follow; the PSP saw our ids.
async fn pay_and_refund(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    let payment = rig.paid("chk_conn_pay").await;
    let id = payment["id"].as_str().unwrap();
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 1500);
    assert_eq!(rig.receivable().await, 1750);
    match psp {
        Psp::Stripe => {
            let session = rig.stripe.session(&token(&payment));
            assert_eq!(session["client_reference_id"], id);
            assert_eq!(session["metadata"]["ferropay_payment_id"], id);
            assert_eq!(session["currency"], "usd");
            assert_eq!(session["amount_total"], 1750);
        }
        Psp::Adyen => {
            let link = rig.adyen.link(&token(&payment));
            assert_eq!(link["reference"], id);
            assert_eq!(link["amount"], json!({"value": 1750, "currency": "USD"}));
        }
        Psp::Sandbox => {}
    }
    let refunds = format!("/v1/payments/{id}/refunds");
    let response = rig
        .app
        .post_keyed(&refunds, "r1", &json!({"order_id": "ord_1", "amount": 500}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let refund: Value = response.json().await.unwrap();
    rig.app
        .wait_for_item(&refunds, refund["id"].as_str().unwrap(), "succeeded")
        .await;
    assert_eq!(
        rig.app.get_payment(id).await["status"],
        "partially_refunded"
    );
    assert_eq!(rig.app.wallet("seller_a", "USD").await, (1000, 1000));
    assert_eq!(rig.receivable().await, 1250);
    rig.ledger_clean().await;
}

/// A declined card. The sandbox fails the payment; at Stripe and Adyen the hosted page stays
/// usable (the buyer may try another card), so the payment waits, and ends `expired` when the
/// page expires (Stripe tells it by webhook; Adyen's link is found expired by the poller).
async fn decline(db: Db, psp: Psp) {
    let options = AppOptions {
        poll_after_ms: 200,
        ..AppOptions::default()
    };
    let routing = Routing {
        default: Some(psp.name().into()),
        ..Routing::default()
    };
    let Some(rig) = rig_with(db, psp, options, routing).await else {
        return;
    };
    let payment = rig.create("chk_conn_decline").await;
    let id = payment["id"].as_str().unwrap();
    match psp {
        Psp::Sandbox => {
            rig.app.pay(&payment, CARD_DECLINED).await;
            let failed = rig.app.wait_for_status(id, "failed").await;
            assert_eq!(failed["failure_code"], "card_declined");
        }
        Psp::Stripe => {
            let status = rig
                .submit(&payment, &[("card_number", stripe::CARD_DECLINED)])
                .await;
            assert_eq!(status, StatusCode::PAYMENT_REQUIRED);
            // The failed attempt's event is recorded and changes nothing.
            eventually(Duration::from_secs(10), "the decline event is recorded", || async {
                rig.app
                    .count("SELECT COUNT(*) FROM webhook_events WHERE event_type = 'payment_intent.payment_failed'")
                    .await
                    == 1
            })
            .await;
            assert_eq!(rig.app.get_payment(id).await["status"], "requires_payment");
            let expired = rig
                .app
                .http
                .post(format!(
                    "{}/v1/checkout/sessions/{}/expire",
                    rig.stripe.base_url,
                    token(&payment)
                ))
                .bearer_auth(stripe::SECRET_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(expired.status(), StatusCode::OK);
            rig.app.wait_for_status(id, "expired").await;
        }
        Psp::Adyen => {
            let status = rig
                .submit(
                    &payment,
                    &[
                        ("card_number", adyen::CARD_OK),
                        ("holder_name", adyen::HOLDER_DECLINED),
                    ],
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            eventually(
                Duration::from_secs(10),
                "the refusal is recorded",
                || async {
                    rig.app
                    .count("SELECT COUNT(*) FROM webhook_events WHERE event_type = 'AUTHORISATION'")
                    .await
                    == 1
                },
            )
            .await;
            assert_eq!(rig.app.get_payment(id).await["status"], "requires_payment");
            rig.adyen.expire(&token(&payment));
            rig.app.wait_for_status(id, "expired").await;
        }
    }
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 0);
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
}

/// Every webhook lost: the poller asks the PSP and captures the payment once.
async fn lost_webhook_healed_by_the_poller(db: Db, psp: Psp) {
    let mut options = AppOptions {
        poll_after_ms: 200,
        ..AppOptions::default()
    };
    options.sandbox.faults.webhook_drop_rate = 1.0;
    options.sandbox.webhook_max_attempts = 1;
    let routing = Routing {
        default: Some(psp.name().into()),
        ..Routing::default()
    };
    let Some(rig) = rig_with(db, psp, options, routing).await else {
        return;
    };
    rig.stripe
        .faults
        .drop_webhooks
        .store(true, Ordering::SeqCst);
    rig.adyen.faults.drop_webhooks.store(true, Ordering::SeqCst);
    let payment = rig.paid("chk_conn_lost").await;
    assert_eq!(
        rig.app.count("SELECT COUNT(*) FROM webhook_events").await,
        0,
        "no webhook reached ferropay"
    );
    assert_eq!(rig.receivable().await, 1750);
    assert_eq!(rig.app.wallet_minor("seller_b", "USD").await, 250);
    assert_eq!(payment["status"], "succeeded");
    rig.ledger_clean().await;
}

/// Each webhook sent twice, and held then delivered newest first: applied once, in the order
/// the state machine allows.
async fn duplicate_and_out_of_order_webhooks(db: Db, psp: Psp) {
    let mut options = AppOptions::default();
    options.sandbox.faults.webhook_duplicate_rate = 1.0;
    options.sandbox.faults.webhook_reorder = true;
    let routing = Routing {
        default: Some(psp.name().into()),
        ..Routing::default()
    };
    let Some(rig) = rig_with(db, psp, options, routing).await else {
        return;
    };
    let payment = rig.create("chk_conn_dup").await;
    let id = payment["id"].as_str().unwrap();
    match psp {
        Psp::Sandbox => rig.pay(&payment).await,
        Psp::Stripe => {
            // An asynchronous payment: `completed` (unpaid) then `async_payment_succeeded`,
            // delivered in reverse and each twice.
            rig.stripe
                .faults
                .hold_webhooks
                .store(true, Ordering::SeqCst);
            let status = rig
                .submit(&payment, &[("iban", stripe::IBAN_ASYNC_OK)])
                .await;
            assert_eq!(status, StatusCode::SEE_OTHER);
            rig.stripe.settle_async(&token(&payment));
            rig.stripe.webhooks.release_reversed().await;
            rig.stripe
                .faults
                .hold_webhooks
                .store(false, Ordering::SeqCst);
            let sent = rig.stripe.webhooks.sent.lock().unwrap().clone();
            for webhook in sent {
                crate::fakes::deliver(rig.stripe.webhooks.url.get().unwrap(), &webhook).await;
            }
        }
        Psp::Adyen => {
            rig.adyen
                .faults
                .duplicate_webhooks
                .store(true, Ordering::SeqCst);
            rig.pay(&payment).await;
        }
    }
    rig.app.wait_for_status(id, "succeeded").await;
    // The copies arrive and are answered as duplicates.
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
    assert_eq!(rig.app.get_payment(id).await["status"], "succeeded");
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM journal_transactions WHERE kind = 'capture'")
            .await,
        1,
        "captured once"
    );
    assert_eq!(rig.receivable().await, 1750);
    rig.ledger_clean().await;
}

/// The provider's passing failures on registration — rate limiting (429 with its headers), then
/// a 5xx (Stripe) or the same idempotency key still in flight (Adyen) — are retried within the
/// request with the same key: the payment is created, and one session exists at the provider.
async fn provider_failures_on_registration_are_retried(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    match psp {
        Psp::Sandbox => unreachable!("the sandbox's faults are tested in jobs.rs and crash.rs"),
        Psp::Stripe => {
            rig.stripe.faults.rate_limited.store(1, Ordering::SeqCst);
            rig.stripe.faults.server_errors.store(1, Ordering::SeqCst);
        }
        Psp::Adyen => {
            rig.adyen.faults.rate_limited.store(1, Ordering::SeqCst);
            rig.adyen.key_conflicts.store(1, Ordering::SeqCst);
        }
    }
    let payment = rig.create("chk_conn_retry").await;
    let id = payment["id"].as_str().unwrap();
    assert_eq!(payment["status"], "requires_payment");
    let sessions = match psp {
        Psp::Stripe => rig.stripe.sessions_for(id),
        _ => rig.adyen.links_for(id),
    };
    assert_eq!(sessions, 1, "one session at the provider");
    rig.pay(&payment).await;
    rig.app.wait_for_status(id, "succeeded").await;
    rig.ledger_clean().await;
}

/// A forged signature and a stale one are refused (400), and change nothing; the genuine
/// webhook is then applied (Adyen answers `[accepted]`).
async fn forged_and_stale_signatures_are_refused(db: Db, psp: Psp) {
    let Some(rig) = rig(db, psp).await else {
        return;
    };
    let payment = rig.create("chk_conn_sig").await;
    let id = payment["id"].as_str().unwrap();
    let url = format!("{}/webhooks/psp/{}", rig.app.base_url, psp.name());
    let post = |headers: Vec<(String, String)>, body: String| {
        let mut request = rig.app.http.post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    match psp {
        Psp::Sandbox => {
            let body = payment_event("evt_forged", "payment.succeeded", &payment);
            let forged = rig.app.send_webhook(&body, "whsec_wrong", now_s()).await;
            assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
            let stale = rig
                .app
                .send_webhook(&body, WEBHOOK_SECRET, now_s() - 301)
                .await;
            assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
        }
        Psp::Stripe => {
            rig.stripe
                .faults
                .hold_webhooks
                .store(true, Ordering::SeqCst);
            rig.pay(&payment).await;
            let genuine = rig
                .stripe
                .webhooks
                .sent
                .lock()
                .unwrap()
                .iter()
                .find(|w| w.body.contains("checkout.session.completed"))
                .cloned()
                .unwrap();
            let forged = post(
                vec![(
                    "Stripe-Signature".into(),
                    stripe::sign("whsec_wrong", now_s(), &genuine.body),
                )],
                genuine.body.clone(),
            )
            .await
            .unwrap();
            assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
            let error: Value = forged.json().await.unwrap();
            assert_eq!(error["error"]["field"], "body");
            let stale = post(
                vec![(
                    "Stripe-Signature".into(),
                    stripe::sign(stripe::WEBHOOK_SECRET, now_s() - 301, &genuine.body),
                )],
                genuine.body.clone(),
            )
            .await
            .unwrap();
            assert_eq!(stale.status(), StatusCode::BAD_REQUEST);
            let unsigned = post(vec![], genuine.body.clone()).await.unwrap();
            assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
            assert_eq!(rig.app.get_payment(id).await["status"], "requires_payment");
            rig.stripe.webhooks.release_reversed().await;
        }
        Psp::Adyen => {
            rig.adyen.faults.hold_webhooks.store(true, Ordering::SeqCst);
            rig.pay(&payment).await;
            let genuine = rig.adyen.webhooks.sent.lock().unwrap()[0].clone();
            let mut tampered: Value = serde_json::from_str(&genuine.body).unwrap();
            tampered["notificationItems"][0]["NotificationRequestItem"]["amount"]["value"] =
                json!(1);
            let forged = post(vec![], tampered.to_string()).await.unwrap();
            assert_eq!(forged.status(), StatusCode::BAD_REQUEST);
            tampered["notificationItems"][0]["NotificationRequestItem"]["additionalData"] =
                json!({});
            let unsigned = post(vec![], tampered.to_string()).await.unwrap();
            assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
            assert_eq!(rig.app.get_payment(id).await["status"], "requires_payment");
            let accepted = post(vec![], genuine.body.clone()).await.unwrap();
            assert_eq!(accepted.status(), StatusCode::OK);
            assert_eq!(accepted.text().await.unwrap(), "[accepted]");
        }
    }
    if psp != Psp::Sandbox {
        rig.app.wait_for_status(id, "succeeded").await;
    }
    rig.ledger_clean().await;
}

macro_rules! each_psp {
    ($($name:ident),+ $(,)?) => {
        each_psp!(@psp via_sandbox Sandbox $($name),+);
        each_psp!(@psp via_stripe Stripe $($name),+);
        each_psp!(@psp via_adyen Adyen $($name),+);
    };
    (@psp $module:ident $psp:ident $($name:ident),+) => {
        mod $module {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(crate::helpers::Db::Sqlite, super::super::Psp::$psp).await
                    }
                )+
            }
            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        super::super::$name(crate::helpers::Db::Postgres, super::super::Psp::$psp).await
                    }
                )+
            }
        }
    };
}

each_psp!(
    pay_and_refund,
    decline,
    lost_webhook_healed_by_the_poller,
    duplicate_and_out_of_order_webhooks,
    forged_and_stale_signatures_are_refused,
);

/// The provider answers 5xx to every registration, and ferropay stops (as a crash would leave
/// it: the request answered 503, the registration job queued). The provider recovers; another
/// instance on the same database registers the payment from the queue, with the same
/// idempotency key, so the provider holds one session; its webhooks went to the stopped
/// instance, so the new one's poller captures the payment.
async fn registration_survives_a_restart(db: Db, psp: Psp) {
    let options = AppOptions {
        poll_after_ms: 200,
        ..AppOptions::default()
    };
    let routing = Routing {
        default: Some(psp.name().into()),
        ..Routing::default()
    };
    let Some(mut rig) = rig_with(db, psp, options, routing).await else {
        return;
    };
    let faults = match psp {
        Psp::Sandbox => unreachable!("the sandbox's crash is tested in crash.rs"),
        Psp::Stripe => &rig.stripe.faults,
        Psp::Adyen => &rig.adyen.faults,
    };
    faults.server_errors.store(1_000_000, Ordering::SeqCst);
    let response = rig
        .app
        .post_payment("key-restart", &checkout("chk_restart"))
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let payment_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM payments WHERE checkout_id = 'chk_restart'")
            .fetch_one(rig.app.service().store.pool())
            .await
            .unwrap()
            .get(0)
    };
    rig.app.running.take().unwrap().shutdown().await;
    faults.server_errors.store(0, Ordering::SeqCst);

    let restarted = ferropay_cli::serve::start(ferropay_cli::serve::ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: rig.app.db.url.clone(),
        max_db_connections: 8,
        public_url: None,
        psp: ferropay_cli::serve::PspChoice::Remote {
            url: rig.app.sandbox_url.clone(),
            api_key: Secret::new(PSP_API_KEY),
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            root_ca_pem: None,
        },
        psps: settings(&rig.stripe, &rig.adyen, Routing::default()),
        platform_fee_bps: 0,
        payout_schedule: None,
        poll_after_ms: 200,
        jobs: test_jobs_config(),
        reconcile_at: None,
        nats: None,
        kafka: None,
        retention: None,
        engine: ferropay::engine::EngineConfig::default(),
        webhooks: test_webhook_config(),
        reconcile_day_close_lag_ms: 0,
        limits: ferropay_http::ServerLimits::default(),
        // The chain keys the first instance used (beside the SQLite file; none on PostgreSQL).
        ledger_keys: ferropay_cli::ledger_keys::resolve(&Default::default(), &rig.app.db.url)
            .expect("chain keys"),
        checkpoint_file: None,
        checkpoint_every_ms: 60_000,
    })
    .await
    .expect("the second instance starts");
    let service = restarted.service.clone();
    let registered = || async {
        service
            .payment(&payment_id)
            .await
            .unwrap()
            .redirect_url
            .is_some()
    };
    eventually(
        Duration::from_secs(20),
        "the queued registration runs",
        registered,
    )
    .await;
    let sessions = match psp {
        Psp::Stripe => rig.stripe.sessions_for(&payment_id),
        _ => rig.adyen.links_for(&payment_id),
    };
    assert_eq!(sessions, 1, "one session at the provider");
    let payment = serde_json::to_value(service.payment(&payment_id).await.unwrap()).unwrap();
    rig.pay(&payment).await;
    eventually(
        Duration::from_secs(20),
        "the poller captures it",
        || async { service.payment(&payment_id).await.unwrap().status.as_str() == "succeeded" },
    )
    .await;
    assert!(service.verify_ledger().await.unwrap().ok());
    restarted.shutdown().await;
}

// The provider's own failure modes (the sandbox's are tested in jobs.rs and crash.rs).
each_psp!(
    @psp stripe_faults Stripe
    provider_failures_on_registration_are_retried,
    registration_survives_a_restart
);
each_psp!(
    @psp adyen_faults Adyen
    provider_failures_on_registration_are_retried,
    registration_survives_a_restart
);

// ---- What is particular to one provider. ----

/// The routing rule: the request's `psp`, else the currency's PSP, else the default; an unknown
/// PSP is the request's fault and creates nothing. Each payment keeps its PSP.
async fn routing_by_request_and_currency(db: Db) {
    let routing = Routing {
        default: Some("sandbox".into()),
        by_currency: [("EUR".to_owned(), "adyen".to_owned())].into(),
        payouts: None,
    };
    let Some(rig) = rig_with(db, Psp::Sandbox, AppOptions::default(), routing).await else {
        return;
    };
    let usd = rig.app.create_payment("chk_route_usd").await;
    assert_eq!(usd["psp"], "sandbox");
    let mut eur = checkout("chk_route_eur");
    eur["currency"] = json!("EUR");
    let response = rig.app.post_payment("k-eur", &eur).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let eur: Value = response.json().await.unwrap();
    assert_eq!(eur["psp"], "adyen");
    assert!(
        eur["redirect_url"]
            .as_str()
            .unwrap()
            .starts_with(&rig.adyen.base_url)
    );
    let mut named = checkout("chk_route_named");
    named["psp"] = json!("stripe");
    let response = rig.app.post_payment("k-named", &named).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let named: Value = response.json().await.unwrap();
    assert_eq!(named["psp"], "stripe");
    let mut unknown = checkout("chk_route_unknown");
    unknown["psp"] = json!("paypal");
    let response = rig.app.post_payment("k-unknown", &unknown).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["field"], "psp");
    assert_eq!(
        rig.app.count("SELECT COUNT(*) FROM payments").await,
        3,
        "the refused request created nothing"
    );
    // An unknown PSP's webhook route: 404.
    let response = rig
        .app
        .http
        .post(format!("{}/webhooks/psp/paypal", rig.app.base_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// Stripe's 3-D Secure test card: the challenge, completed, pays.
async fn stripe_three_d_secure(db: Db) {
    let Some(rig) = rig(db, Psp::Stripe).await else {
        return;
    };
    let payment = rig.create("chk_3ds").await;
    let status = rig
        .submit(&payment, &[("card_number", stripe::CARD_3DS)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        rig.app.get_payment(payment["id"].as_str().unwrap()).await["status"],
        "requires_payment"
    );
    let response = rig
        .app
        .http
        .post(format!("{}/3ds", payment["redirect_url"].as_str().unwrap()))
        .form(&[("outcome", "complete")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    rig.app
        .wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
        .await;
    rig.ledger_clean().await;
}

/// SEPA through Stripe: `processing` until Stripe says the debit failed; nothing is captured.
async fn stripe_async_payment_fails(db: Db) {
    let Some(rig) = rig(db, Psp::Stripe).await else {
        return;
    };
    let payment = rig.create("chk_sepa_fail").await;
    let id = payment["id"].as_str().unwrap();
    rig.submit(&payment, &[("iban", stripe::IBAN_ASYNC_FAIL)])
        .await;
    rig.app.wait_for_status(id, "processing").await;
    rig.stripe.settle_async(&token(&payment));
    let failed = rig.app.wait_for_status(id, "failed").await;
    assert_eq!(failed["orders"][0]["status"], "failed");
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
}

/// Payouts through Stripe Connect: a seller with a connected account is paid by a transfer to
/// it; a seller without one gets a failed payout and keeps the money in the wallet.
async fn stripe_connect_payouts(db: Db) {
    let routing = Routing {
        default: Some("stripe".into()),
        payouts: Some("stripe".into()),
        ..Routing::default()
    };
    let Some(rig) = rig_with(db, Psp::Stripe, AppOptions::default(), routing).await else {
        return;
    };
    rig.paid("chk_connect").await;
    let put = |seller: &str, psp: &str, body: Value| {
        rig.app
            .http
            .put(format!(
                "{}/v1/sellers/{seller}/psp_accounts/{psp}",
                rig.app.base_url
            ))
            .bearer_auth(&rig.app.api_key)
            .json(&body)
            .send()
    };
    let bad = put("seller_a", "stripe", json!({"account_id": "ba_123"}))
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error: Value = bad.json().await.unwrap();
    assert_eq!(error["error"]["field"], "account_id");
    let unknown = put("seller_a", "paypal", json!({"account_id": "x"}))
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let ok = put("seller_a", "stripe", json!({"account_id": "acct_1SellerA"}))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let response = rig
        .app
        .post_keyed(
            "/v1/sellers/seller_a/payouts",
            "p1",
            &json!({"currency": "USD"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let payout: Value = response.json().await.unwrap();
    assert_eq!(payout["amount"], 1500);
    rig.app
        .wait_for_item(
            "/v1/sellers/seller_a/payouts",
            payout["id"].as_str().unwrap(),
            "paid",
        )
        .await;
    assert_eq!(rig.app.wallet_minor("seller_a", "USD").await, 0);
    // "Was it made?", asked by our key (reverse only on proof): yes, and paid; another key: no.
    let stripe = rig.app.service().connectors.of("stripe").unwrap().clone();
    match stripe
        .payout_by_key(payout["id"].as_str().unwrap())
        .await
        .unwrap()
    {
        MadeByKey::Made { psp_id, settled } => {
            assert!(psp_id.starts_with("tr_"), "{psp_id}");
            assert!(settled.is_some_and(|s| s.succeeded && s.amount_minor == Some(1500)));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        stripe.payout_by_key("pout_never_sent").await.unwrap(),
        MadeByKey::NotMade
    );

    let response = rig
        .app
        .post_keyed(
            "/v1/sellers/seller_b/payouts",
            "p2",
            &json!({"currency": "USD"}),
        )
        .await;
    let payout: Value = response.json().await.unwrap();
    let failed = rig
        .app
        .wait_for_item(
            "/v1/sellers/seller_b/payouts",
            payout["id"].as_str().unwrap(),
            "failed",
        )
        .await;
    assert_eq!(failed["failure_code"], "provider_rejected");
    assert_eq!(rig.app.wallet("seller_b", "USD").await, (250, 250));
    rig.ledger_clean().await;
}

/// Stripe's payout to our bank, read from its balance transactions: two payments (one partly
/// refunded) and a Connect transfer reconcile clean, the receivable ends at zero; then a second
/// payout with a dispute and a charge ferropay never made reports a break of each kind.
async fn stripe_balance_transactions_reconcile(db: Db) {
    let routing = Routing {
        default: Some("stripe".into()),
        payouts: Some("stripe".into()),
        ..Routing::default()
    };
    let Some(rig) = rig_with(db, Psp::Stripe, AppOptions::default(), routing).await else {
        return;
    };
    let first = rig.paid("chk_stl_1").await;
    let second = rig.paid("chk_stl_2").await;
    let refunds = format!("/v1/payments/{}/refunds", first["id"].as_str().unwrap());
    let refund: Value = rig
        .app
        .post_keyed(&refunds, "r1", &json!({"order_id": "ord_2"}))
        .await
        .json()
        .await
        .unwrap();
    rig.app
        .wait_for_item(&refunds, refund["id"].as_str().unwrap(), "succeeded")
        .await;
    let today = time::OffsetDateTime::now_utc().date();
    rig.stripe.payout(now_s());
    // Through the API, as an operator runs it.
    let app = &rig.app;
    let run = |psp: &'static str| async move {
        let body = json!({"date": today.to_string(), "psp": psp});
        app.post_keyed("/v1/reconciliation/runs", "unused", &body)
            .await
    };
    let unknown = run("paypal").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["field"], "psp");
    let response = run("stripe").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["psp"], "stripe");
    // Two charges, the refund, the payout to the bank.
    assert_eq!(report["lines"], 4, "{report:#}");
    assert_eq!(report["breaks_found"], 0, "{report:#}");
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;
    let reconciler = rig.app.service().psp_reconciler("stripe").unwrap();
    let dir = std::env::temp_dir();
    let report = reconciler.reconcile_day(today, &dir, false).await.unwrap();
    // Read again: matched again, nothing posted twice.
    assert_eq!(report.breaks_found, 0, "{report:#?}");
    assert_eq!(rig.receivable().await, 0);

    // A dispute on the second payment (`charge.dispute.created` names its PaymentIntent: the
    // dispute flow books it on our payment), and a charge ferropay never made; then the next
    // payout: the chargeback matches, the foreign charge is an unknown reference.
    let session = rig.stripe.session(&token(&second));
    let dispute = rig
        .stripe
        .dispute(session["payment_intent"].as_str().unwrap());
    let disputes = format!("/v1/payments/{}/disputes", second["id"].as_str().unwrap());
    eventually(Duration::from_secs(10), "the dispute is booked", || async {
        let listed = rig.app.get_json(&disputes).await;
        listed["data"].as_array().is_some_and(|d| {
            d.len() == 1
                && d[0]["psp_dispute_id"] == dispute["id"]
                && d[0]["status"] == "needs_response"
        })
    })
    .await;
    rig.stripe.foreign_charge(999);
    rig.stripe.payout(now_s());
    let report = reconciler.reconcile_day(today, &dir, false).await.unwrap();
    assert_eq!(report.breaks_found, 1, "{report:#?}");
    assert_eq!(
        report.breaks_by_kind.get(&BreakKind::UnknownReference),
        Some(&1),
        "{report:#?}"
    );
    rig.ledger_clean().await;
}

/// Adyen's Settlement details report: Settled, Refunded, Fee and MerchantPayout records reconcile
/// clean; the same batch with a tampered gross and a chargeback reports each by kind.
async fn adyen_settlement_report_reconciles(db: Db) {
    let Some(rig) = rig(db, Psp::Adyen).await else {
        return;
    };
    let first = rig.paid("chk_ady_1").await;
    rig.paid("chk_ady_2").await;
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
    let dir = std::env::temp_dir().join(format!("ferropay-adyen-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("settlement_detail_report_batch_1.csv");
    std::fs::write(&path, rig.adyen.settlement_report(1, 15)).unwrap();
    let reconciler = rig.app.service().psp_reconciler("adyen").unwrap();
    let report = reconciler
        .reconcile_file(&path, &RunOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(report.lines, 5, "{report:#?}");
    assert_eq!(report.breaks_found, 0, "{report:#?}");
    assert_eq!(rig.receivable().await, 0);
    rig.ledger_clean().await;

    // Batch 2: a chargeback (booked by the dispute flow from its CHARGEBACK notification)
    // matches; the third payment's Settled line says one cent more: an amount mismatch.
    let third = rig.paid("chk_ady_3").await;
    let psp = rig.adyen.payment_of(&token(&third)).unwrap();
    let chargeback = rig.adyen.chargeback(&psp);
    let disputes = format!("/v1/payments/{}/disputes", third["id"].as_str().unwrap());
    eventually(
        Duration::from_secs(10),
        "the chargeback is booked",
        || async {
            let listed = rig.app.get_json(&disputes).await;
            listed["data"]
                .as_array()
                .is_some_and(|d| d.len() == 1 && d[0]["psp_dispute_id"] == chargeback.as_str())
        },
    )
    .await;
    let text = rig.adyen.settlement_report(2, 0);
    let tampered: String = text
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
    let path = dir.join("settlement_detail_report_batch_2.csv");
    std::fs::write(&path, tampered).unwrap();
    let report = reconciler
        .reconcile_file(&path, &RunOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        report.breaks_by_kind.get(&BreakKind::AmountMismatch),
        Some(&1),
        "{report:#?}"
    );
    assert_eq!(report.breaks_found, 1, "{report:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ferropay serve --config`: a configuration that cannot work stops the server at start, saying
/// what is wrong, without repeating a secret.
#[tokio::test]
async fn serve_refuses_a_connector_configuration_that_cannot_work() {
    let db = TestDb::create(Db::Sqlite).await.unwrap();
    let dir = std::env::temp_dir().join(format!("ferropay-conf-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ferropay.toml");
    let config_arg = config.to_str().unwrap().to_owned();
    let serve = |env: &[(&str, &str)]| {
        let mut all = vec![
            ("FERROPAY_DATABASE_URL", db.url.as_str()),
            ("FERROPAY_LISTEN", "127.0.0.1:0"),
            ("FERROPAY_SANDBOX_LISTEN", "127.0.0.1:0"),
            ("FERROPAY_JOB_CONCURRENCY", "0"),
        ];
        all.extend_from_slice(env);
        run_cli_with_env(&["serve", "--config", &config_arg], &all)
    };
    for (text, env, needle) in [
        ("[stripe]\n", vec![], "FERROPAY_STRIPE_SECRET_KEY"),
        (
            "[stripe]\nsecret_key = \"sk_live_pasted_here\"\n",
            vec![],
            "unknown field",
        ),
        (
            "[routing]\ndefault = \"adyen\"\n",
            vec![],
            "`adyen`, which is not configured",
        ),
        (
            "",
            vec![
                ("FERROPAY_ADYEN_API_KEY", "AQE_key"),
                ("FERROPAY_ADYEN_HMAC_KEY", "00ff"),
            ],
            "FERROPAY_ADYEN_MERCHANT_ACCOUNT",
        ),
    ] {
        std::fs::write(&config, text).unwrap();
        let (code, stdout, stderr) = serve(&env);
        assert_ne!(code, 0, "{text}: {stdout}{stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
        assert!(!stderr.contains("sk_live_pasted_here"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

crate::db_test!(
    routing_by_request_and_currency,
    stripe_three_d_secure,
    stripe_async_payment_fails,
    stripe_connect_payouts,
    stripe_balance_transactions_reconcile,
    adyen_settlement_report_reconciles,
);
