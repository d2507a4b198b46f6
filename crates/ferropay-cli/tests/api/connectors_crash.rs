//! The crash test against the real providers' fakes: the real `ferropay` binary, routing to
//! Stripe or Adyen, is killed (SIGKILL) by the fake itself at the worst moment — the provider
//! has made the session, the refund, or the seller's payout, and ferropay has not stored its
//! answer. Restarted on the same port and database, it sends the same request again with the
//! same idempotency key (the client's retry, the queued job): the provider answers what it made,
//! so the provider holds one session, one refund and one transfer, the payment ends paid and
//! then partly refunded, captured once, the seller paid once, and `ferropay ledger verify`
//! passes.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::connectors::Psp;
use crate::fakes::adyen::{self, AdyenFake};
use crate::fakes::stripe::{self, StripeFake};
use crate::helpers::*;

/// `ferropay serve` as a child process, killed when dropped.
struct Server {
    port: u16,
    database_url: String,
    config: std::path::PathBuf,
    env: Vec<(&'static str, String)>,
    log: std::path::PathBuf,
    /// The running child's pid (0 when stopped), for the fake's crash hook.
    pid: Arc<AtomicU32>,
    child: Option<Child>,
}

impl Server {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn start(&mut self, http: &reqwest::Client) {
        let child = spawn_until_healthy(http, &self.base_url(), &self.log, |log| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ferropay"));
            command
                .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
                .args(["--database-url", &self.database_url])
                .args(["--config", self.config.to_str().unwrap()])
                .args(["--poll-after-s", "1", "--lease-s", "2"])
                .env("FERROPAY_SANDBOX_LISTEN", "127.0.0.1:0")
                .env("FERROPAY_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(log);
            for (name, value) in &self.env {
                command.env(name, value);
            }
            command
        })
        .await;
        self.pid.store(child.id(), Ordering::SeqCst);
        self.child = Some(child);
    }

    /// Reaps the child the fake killed.
    fn reap(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.pid.store(0, Ordering::SeqCst);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.reap();
    }
}

/// A hook for the fake: SIGKILL ferropay once, the first time a POST to a path containing
/// `needle` has taken effect (before the fake answers it).
fn kill_once_on(pid: Arc<AtomicU32>, needle: &'static str) -> Box<dyn Fn(&str) + Send + Sync> {
    let fired = Arc::new(Mutex::new(false));
    Box::new(move |path: &str| {
        let mut fired = fired.lock().unwrap();
        if *fired || !path.contains(needle) {
            return;
        }
        let pid = pid.load(Ordering::SeqCst);
        if pid != 0 {
            *fired = true;
            let status = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .expect("kill -9");
            assert!(status.success());
        }
    })
}

/// POSTs with `key` until ferropay answers 201 (connection errors, 503 and 409 while it is down
/// or the first request's key is still held are retried, as a client does).
async fn post_until_created(
    http: &reqwest::Client,
    url: &str,
    api_key: &str,
    key: &str,
    body: &Value,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http
            .post(url)
            .bearer_auth(api_key)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await;
        if let Ok(response) = response {
            if response.status() == StatusCode::CREATED {
                return response.json().await.unwrap();
            }
            assert!(
                matches!(response.status().as_u16(), 409 | 503),
                "{}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no 201 from {url} within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn killed_after_the_provider_accepted(db: Db, psp: Psp) {
    let Some(db) = TestDb::create(db).await else {
        return;
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let stripe_fake = StripeFake::start().await;
    let adyen_fake = AdyenFake::start().await;
    let dir = std::env::temp_dir().join(format!("ferropay-crash-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ferropay.toml");
    std::fs::write(
        &config,
        format!(
            "[routing]\ndefault = \"{0}\"\npayouts = \"{0}\"\n",
            psp.name()
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run_cli(&["api-key", "create", "--database-url", &db.url]);
    assert_eq!(code, 0, "{stderr}");
    let api_key = serde_json::from_str::<Value>(&stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut server = Server {
        port: fixed_port(),
        database_url: db.url.clone(),
        config,
        env: vec![
            ("FERROPAY_STRIPE_SECRET_KEY", stripe::SECRET_KEY.into()),
            (
                "FERROPAY_STRIPE_WEBHOOK_SECRET",
                stripe::WEBHOOK_SECRET.into(),
            ),
            ("FERROPAY_STRIPE_API_BASE", stripe_fake.base_url.clone()),
            ("FERROPAY_ADYEN_API_KEY", adyen::API_KEY.into()),
            ("FERROPAY_ADYEN_HMAC_KEY", adyen::HMAC_KEY.into()),
            (
                "FERROPAY_ADYEN_MERCHANT_ACCOUNT",
                adyen::MERCHANT_ACCOUNT.into(),
            ),
            ("FERROPAY_ADYEN_CHECKOUT_BASE", adyen_fake.checkout_base()),
            (
                "FERROPAY_ADYEN_BALANCE_ACCOUNT_ID",
                adyen::PLATFORM_BALANCE_ACCOUNT.into(),
            ),
            ("FERROPAY_ADYEN_TRANSFERS_BASE", adyen_fake.transfers_base()),
            (
                "FERROPAY_ADYEN_TRANSFERS_API_KEY",
                adyen::TRANSFERS_API_KEY.into(),
            ),
            (
                "FERROPAY_ADYEN_BALANCE_PLATFORM_HMAC_KEY",
                adyen::BALANCE_PLATFORM_HMAC_KEY.into(),
            ),
        ],
        log: dir.join("ferropay.log"),
        pid: Arc::new(AtomicU32::new(0)),
        child: None,
    };
    let base = server.base_url();
    stripe_fake
        .webhooks
        .url
        .set(format!("{base}/webhooks/psp/stripe"))
        .unwrap();
    adyen_fake
        .webhooks
        .url
        .set(format!("{base}/webhooks/psp/adyen"))
        .unwrap();
    let faults = match psp {
        Psp::Stripe => &stripe_fake.faults,
        _ => &adyen_fake.faults,
    };
    server.start(&http).await;

    // 1. Killed once the provider has made the session, before ferropay stores it.
    let session_path = match psp {
        Psp::Stripe => "/checkout/sessions",
        _ => "/paymentLinks",
    };
    *faults.on_accepted.lock().unwrap() = Some(kill_once_on(server.pid.clone(), session_path));
    let payments_url = format!("{base}/v1/payments");
    let first = http
        .post(&payments_url)
        .bearer_auth(&api_key)
        .header("Idempotency-Key", "crash-pay")
        .json(&checkout("chk_conn_crash"))
        .send()
        .await;
    assert!(
        first.is_err() || first.is_ok_and(|r| r.status().is_server_error()),
        "the request died with ferropay"
    );
    server.reap();
    server.start(&http).await;
    let payment = post_until_created(
        &http,
        &payments_url,
        &api_key,
        "crash-pay",
        &checkout("chk_conn_crash"),
    )
    .await;
    let payment_id = payment["id"].as_str().unwrap().to_owned();
    let sessions = match psp {
        Psp::Stripe => stripe_fake.sessions_for(&payment_id),
        _ => adyen_fake.links_for(&payment_id),
    };
    assert_eq!(sessions, 1, "one session at the provider");

    // The buyer pays on the provider's page.
    let page = payment["redirect_url"].as_str().unwrap();
    let fields: Vec<(&str, &str)> = match psp {
        Psp::Stripe => vec![("card_number", stripe::CARD_OK)],
        _ => vec![("card_number", adyen::CARD_OK), ("holder_name", "Ada")],
    };
    let paid = http.post(page).form(&fields).send().await.unwrap();
    assert!(paid.status().is_redirection(), "{}", paid.status());
    let get = |path: String| {
        let http = http.clone();
        let api_key = api_key.clone();
        let base = base.clone();
        async move {
            http.get(format!("{base}{path}"))
                .bearer_auth(&api_key)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    eventually(Duration::from_secs(20), "the payment is paid", || async {
        get(format!("/v1/payments/{payment_id}")).await["status"] == "succeeded"
    })
    .await;

    // 2. Killed once the provider has made a refund, before ferropay stores its answer.
    let refund_path = match psp {
        Psp::Stripe => "/v1/refunds",
        _ => "/refunds",
    };
    *faults.on_accepted.lock().unwrap() = Some(kill_once_on(server.pid.clone(), refund_path));
    let refunds_url = format!("{base}/v1/payments/{payment_id}/refunds");
    let refund = post_until_created(
        &http,
        &refunds_url,
        &api_key,
        "crash-refund",
        &json!({"order_id": "ord_1", "amount": 500}),
    )
    .await;
    let refund_id = refund["id"].as_str().unwrap().to_owned();
    // The refund job is killed with ferropay; restarted, it takes the job over.
    eventually(
        Duration::from_secs(20),
        "the refund job kills ferropay",
        || async { server_dead(&server) },
    )
    .await;
    server.reap();
    server.start(&http).await;
    eventually(Duration::from_secs(30), "the refund succeeds", || async {
        let listed = get(format!("/v1/payments/{payment_id}/refunds")).await;
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == refund_id.as_str() && r["status"] == "succeeded")
    })
    .await;
    let made = match psp {
        Psp::Stripe => stripe_fake.refunds_for(&refund_id),
        _ => adyen_fake.refunds_for(&refund_id),
    };
    assert_eq!(made, 1, "refunded once at the provider");

    // 3. Killed once the provider has made a seller's payout (a transfer), before ferropay
    // stores its answer.
    let account = match psp {
        Psp::Stripe => "acct_1SellerB",
        _ => "BA32272223222B5CTBLB8QRZW",
    };
    let registered = http
        .put(format!(
            "{base}/v1/sellers/seller_b/psp_accounts/{}",
            psp.name()
        ))
        .bearer_auth(&api_key)
        .json(&json!({"account_id": account}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), StatusCode::OK);
    *faults.on_accepted.lock().unwrap() = Some(kill_once_on(server.pid.clone(), "/transfers"));
    let payout = post_until_created(
        &http,
        &format!("{base}/v1/sellers/seller_b/payouts"),
        &api_key,
        "crash-payout",
        &json!({"currency": "USD"}),
    )
    .await;
    let payout_id = payout["id"].as_str().unwrap().to_owned();
    assert_eq!(payout["amount"], 250);
    eventually(
        Duration::from_secs(20),
        "the payout job kills ferropay",
        || async { server_dead(&server) },
    )
    .await;
    server.reap();
    server.start(&http).await;
    eventually(Duration::from_secs(30), "the payout is paid", || async {
        let listed = get("/v1/sellers/seller_b/payouts".to_owned()).await;
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == payout_id.as_str() && p["status"] == "paid")
    })
    .await;
    let transfers = match psp {
        Psp::Stripe => stripe_fake.transfers_for(&payout_id),
        _ => adyen_fake.transfers_for(&payout_id).len(),
    };
    assert_eq!(transfers, 1, "paid out once at the provider");
    let wallet = get("/v1/sellers/seller_b/wallet".to_owned()).await;
    assert_eq!(wallet["balances"][0]["amount"], 0, "{wallet}");

    // Nothing charged twice; the books agree.
    let store = ferropay::store::Store::open(&db.url, 2).await.unwrap();
    assert_eq!(
        count_on(
            &store,
            "SELECT COUNT(*) FROM journal_transactions WHERE kind = 'capture'"
        )
        .await,
        1,
        "captured once"
    );
    assert_eq!(
        get(format!("/v1/payments/{payment_id}")).await["status"],
        "partially_refunded"
    );
    let wallet = get("/v1/sellers/seller_a/wallet".to_owned()).await;
    assert_eq!(wallet["balances"][0]["amount"], 1000, "{wallet}");
    let (code, stdout, stderr) = run_cli(&["ledger", "verify", "--database-url", &db.url]);
    assert_eq!(code, 0, "ledger verify: {stdout} {stderr}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether the server's child has exited (the fake killed it): gone, or a zombie not yet
/// reaped.
fn server_dead(server: &Server) -> bool {
    let pid = server.pid.load(Ordering::SeqCst);
    if pid == 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.split_whitespace().nth(2) == Some("Z"),
    }
}

crate::stripe_and_adyen!(killed_after_the_provider_accepted);
