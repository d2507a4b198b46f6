//! `ferropay demo`: something to look at in a fresh database. It starts ferropay and its sandbox
//! PSP in this process on free ports, and over real HTTP, as a checkout and its buyers would,
//! makes payments with every test card (paid on the hosted page's form, 3-D Secure answered both
//! ways, a processing error retried, one held for review, one disputed by the buyer's bank soon
//! after), refunds one order in full and one in part, pays a seller out, fetches the day's
//! settlement file from the PSP and reconciles it (the dispute's chargeback line included), and
//! verifies the ledger. It prints what it made as one JSON object, then stops.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferropay::jobs::JobsConfig;
use ferropay::store::Store;
use sandbox_psp::SandboxConfig;
use serde_json::{Value, json};

use crate::serve::{self, PspChoice, ServeConfig};

/// How long the demo waits for any one outcome (a webhook, a review, a payout) before giving up.
const WAIT_LIMIT_MS: u64 = 30_000;

/// The review card's delay in the demo, short so that the demo is quick.
const REVIEW_DELAY_MS: u64 = 1_000;

/// The dispute delay of card 4000 0000 0000 2685 in the demo, short so that the demo is quick.
const DISPUTE_DELAY_MS: u64 = 500;

/// One payment the demo makes: a checkout, the cards tried in turn, the 3-D Secure code if asked.
struct Plan {
    label: &'static str,
    cards: &'static [&'static str],
    code: Option<&'static str>,
    orders: &'static [(&'static str, i64)],
    expect: &'static str,
}

const PLANS: [Plan; 9] = [
    Plan {
        label: "4242: paid at once",
        cards: &["4242424242424242"],
        code: None,
        orders: &[("seller_a", 1500), ("seller_b", 250)],
        expect: "succeeded",
    },
    Plan {
        label: "4242: paid at once",
        cards: &["4242424242424242"],
        code: None,
        orders: &[("seller_a", 3200)],
        expect: "succeeded",
    },
    Plan {
        label: "0002: declined",
        cards: &["4000000000000002"],
        code: None,
        orders: &[("seller_b", 4200)],
        expect: "failed",
    },
    Plan {
        label: "9995: insufficient funds",
        cards: &["4000000000009995"],
        code: None,
        orders: &[("seller_c", 12999)],
        expect: "failed",
    },
    Plan {
        label: "3155: 3-D Secure passed",
        cards: &["4000002500003155"],
        code: Some("123456"),
        orders: &[("seller_b", 990), ("seller_c", 1010)],
        expect: "succeeded",
    },
    Plan {
        label: "3155: 3-D Secure failed",
        cards: &["4000002500003155"],
        code: Some("000000"),
        orders: &[("seller_a", 700)],
        expect: "failed",
    },
    Plan {
        label: "0259: held for review, then paid",
        cards: &["4000000000000259"],
        code: None,
        orders: &[("seller_c", 2500)],
        expect: "succeeded",
    },
    Plan {
        label: "0119: processing error, then paid with 4242",
        cards: &["4000000000000119", "4242424242424242"],
        code: None,
        orders: &[("seller_a", 880)],
        expect: "succeeded",
    },
    Plan {
        label: DISPUTED,
        cards: &["4000000000002685"],
        code: None,
        orders: &[("seller_b", 1999)],
        expect: "succeeded",
    },
];

/// The plan whose payment the buyer's bank disputes.
const DISPUTED: &str = "2685: paid, then disputed by the buyer's bank";

pub struct DemoConfig {
    pub database_url: String,
}

pub async fn run(config: DemoConfig) -> anyhow::Result<Value> {
    let store = Store::open(&config.database_url, 1).await?;
    let key = ferropay::api_keys::create(&store, "demo").await?;
    store.close().await;
    let running = serve::start(ServeConfig {
        listen: "127.0.0.1:0".parse()?,
        database_url: config.database_url.clone(),
        max_db_connections: 8,
        public_url: None,
        psp: PspChoice::InProcessSandbox {
            listen: "127.0.0.1:0".parse()?,
            sandbox: SandboxConfig {
                review_delay_ms: REVIEW_DELAY_MS,
                dispute_delay_ms: DISPUTE_DELAY_MS,
                ..SandboxConfig::default()
            },
        },
        psps: Default::default(),
        platform_fee_bps: 0,
        payout_schedule: None,
        poll_after_ms: 60_000,
        jobs: JobsConfig::default(),
        reconcile_at: None,
        reconcile_day_close_lag_ms: 0,
        nats: None,
        retention: None,
        engine: ferropay::engine::EngineConfig::default(),
        webhooks: Default::default(),
        kafka: None,
        ledger_keys: crate::ledger_keys::resolve(
            &crate::ledger_keys::KeySource::default(),
            &config.database_url,
        )?,
        checkpoint_file: None,
        checkpoint_every_ms: 0,
        limits: ferropay_http::ServerLimits::default(),
    })
    .await?;
    let result = seed(&running, &key.secret).await;
    running.shutdown().await;
    result
}

struct Client {
    http: reqwest::Client,
    base_url: String,
    key: String,
}

impl Client {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .send()
            .await?;
        answer(response).await
    }

    async fn post(&self, path: &str, idempotency_key: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.key)
            .header("Idempotency-Key", idempotency_key)
            .json(body)
            .send()
            .await?;
        answer(response).await
    }

    /// Polls `path` until `done` holds for its answer.
    async fn wait_for(&self, path: &str, done: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let started = Instant::now();
        loop {
            let value = self.get(path).await?;
            if done(&value) {
                return Ok(value);
            }
            if started.elapsed() > Duration::from_millis(WAIT_LIMIT_MS) {
                bail!("{path} did not settle within {WAIT_LIMIT_MS} ms: {value}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn answer(response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.context("a JSON answer")?;
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

/// The buyer on the hosted page: posts the card (and the 3-D Secure code when asked).
async fn pay(http: &reqwest::Client, pay_url: &str, plan: &Plan) -> anyhow::Result<()> {
    for card in plan.cards {
        let response = http
            .post(pay_url)
            .form(&[
                ("card_number", *card),
                ("exp", "12/34"),
                ("cvc", "123"),
                ("name", "Demo Buyer"),
            ])
            .send()
            .await?;
        if response.status().is_redirection() {
            return Ok(());
        }
        let page = response.text().await?;
        if page.contains("name=\"code\"") {
            let code = plan.code.unwrap_or("123456");
            let answered = http
                .post(format!("{pay_url}/challenge"))
                .form(&[("code", code)])
                .send()
                .await?;
            if !answered.status().is_redirection() {
                bail!("the 3-D Secure challenge did not send the buyer back");
            }
            return Ok(());
        }
        // A processing error shows the form again: the next card is tried.
    }
    bail!("the hosted page never sent the buyer back ({})", plan.label)
}

async fn seed(running: &serve::Running, key: &str) -> anyhow::Result<Value> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?;
    let client = Client {
        http: http.clone(),
        base_url: running.public_url.clone(),
        key: key.to_owned(),
    };
    // Checkout ids are unique per run, so the demo can run again on the same database.
    let run = ferropay::ids::new_id("demo");
    let mut payments = Vec::new();
    for (n, plan) in PLANS.iter().enumerate() {
        let orders: Vec<Value> = plan
            .orders
            .iter()
            .enumerate()
            .map(|(i, (seller, amount))| {
                json!({"order_id": format!("ord_{n}_{i}"), "seller_id": seller, "amount": amount})
            })
            .collect();
        let checkout_id = format!("chk_{run}_{n}");
        let created = client
            .post(
                "/v1/payments",
                &checkout_id,
                &json!({
                    "checkout_id": checkout_id,
                    "buyer": {"id": format!("buyer_{n}"), "email": format!("buyer{n}@example.com")},
                    "currency": "USD",
                    "orders": orders,
                }),
            )
            .await?;
        let id = created["id"].as_str().context("payment id")?.to_owned();
        let pay_url = created["redirect_url"].as_str().context("redirect_url")?;
        pay(&http, pay_url, plan).await?;
        let path = format!("/v1/payments/{id}");
        let settled = client
            .wait_for(&path, |p| p["status"] == plan.expect)
            .await?;
        payments.push(json!({
            "card": plan.label,
            "id": id,
            "status": settled["status"],
            "failure_code": settled["failure_code"],
            "amount": settled["amount"],
        }));
    }

    // The disputed payment's dispute, booked before the day is reconciled (its chargeback line
    // then matches).
    let disputed = payments
        .iter()
        .find(|p| p["card"] == DISPUTED)
        .and_then(|p| p["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let disputes = client
        .wait_for(&format!("/v1/payments/{disputed}/disputes"), |list| {
            list["data"].as_array().is_some_and(|d| !d.is_empty())
        })
        .await?;
    let dispute = &disputes["data"][0];

    // A full refund of the first payment's second order, part of the second payment.
    let first = payments[0]["id"].as_str().unwrap_or_default().to_owned();
    let second = payments[1]["id"].as_str().unwrap_or_default().to_owned();
    let mut refunds = Vec::new();
    for (payment, order, amount) in [(&first, "ord_0_1", None), (&second, "ord_1_0", Some(1200))] {
        let mut body = json!({"order_id": order});
        if let Some(amount) = amount {
            body["amount"] = json!(amount);
        }
        let refund = client
            .post(
                &format!("/v1/payments/{payment}/refunds"),
                &format!("refund-{run}-{order}"),
                &body,
            )
            .await?;
        let refund_id = refund["id"].as_str().unwrap_or_default().to_owned();
        let listed = client
            .wait_for(&format!("/v1/payments/{payment}/refunds"), |list| {
                list["data"].as_array().is_some_and(|refunds| {
                    refunds
                        .iter()
                        .any(|r| r["id"] == refund_id.as_str() && r["status"] == "succeeded")
                })
            })
            .await?;
        refunds.push(
            json!({"payment_id": payment, "order_id": order, "refund_id": refund_id,
                            "refunds": listed["data"].as_array().map(Vec::len)}),
        );
    }

    let payout = client
        .post(
            "/v1/sellers/seller_a/payouts",
            &format!("payout-{run}"),
            &json!({"currency": "USD"}),
        )
        .await?;
    let payout_id = payout["id"].as_str().unwrap_or_default().to_owned();
    client
        .wait_for("/v1/sellers/seller_a/payouts", |list| {
            list["data"].as_array().is_some_and(|payouts| {
                payouts
                    .iter()
                    .any(|p| p["id"] == payout_id.as_str() && p["status"] == "paid")
            })
        })
        .await?;

    let today = ferropay::clock::rfc3339_from_ms(ferropay::clock::now_ms());
    let date = ferropay::reconcile::schedule::parse_date(today.get(..10).unwrap_or_default())
        .map_err(anyhow::Error::msg)?;
    let report = running
        .service
        .reconciler()
        .reconcile_day(date, &std::env::temp_dir(), true)
        .await?;
    let verified = running.service.verify_ledger().await?;
    let wallets = {
        let mut wallets = serde_json::Map::new();
        for seller in ["seller_a", "seller_b", "seller_c"] {
            wallets.insert(
                seller.to_owned(),
                client.get(&format!("/v1/sellers/{seller}/wallet")).await?["balances"].clone(),
            );
        }
        wallets
    };
    Ok(json!({
        "payments": payments,
        "refunds": refunds,
        "dispute": {"id": dispute["id"], "payment_id": disputed, "status": dispute["status"],
                    "amount": dispute["amount"], "reason": dispute["reason"]},
        "payout": {"id": payout_id, "seller_id": "seller_a", "amount": payout["amount"], "status": "paid"},
        "reconciliation": {"date": date.to_string(), "provisional": report.provisional, "lines": report.lines, "matched": report.matched,
                           "breaks": report.breaks_found},
        "wallets": wallets,
        "ledger": {"transactions": verified.transactions, "balanced": verified.balanced,
                   "wallets_match": verified.wallets_match, "chain_intact": verified.chain_intact},
        "next": "run `ferropay serve` and open http://127.0.0.1:8080/payments/{id}/status for any payment above, or the console at http://127.0.0.1:8080/console (its disputes tab shows the dispute)",
    }))
}
