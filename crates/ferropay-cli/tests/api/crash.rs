//! The crash test: the real `ferropay` binary receives the webhooks of a standalone sandbox PSP
//! (`ferropay sandbox-psp`, another process) that fails 20 % of API calls (500s and dropped
//! connections, before and after the effect), duplicates 30 % of webhooks, drops 20 % of first
//! attempts, reorders them, and gives a webhook up after three attempts (so webhooks sent while
//! ferropay is down are lost for good). Concurrent checkouts create 200 payments through the API,
//! retrying 503s and connection errors with the same key; buyers pay on the hosted page with a
//! mix of cards, and some never pay. Meanwhile ferropay is killed with SIGKILL at random moments,
//! at least three times, stays down for up to 1.5 s, and is restarted on the same port and
//! database.
//!
//! At the end every payment is final and agrees with the sandbox's own record of it, each has
//! one PSP session and at most one capture, `ferropay ledger verify` passes, every seller's
//! wallet holds what the sandbox says they sold, and no job is left outside the dead-letter
//! queue. It prints its counts and its duration (`cargo nextest run --no-capture -E
//! 'test(crash::)'` shows them).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferropay::store::Store;
use futures_util::StreamExt;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::Mutex;

use crate::db_test;
use crate::helpers::*;

const PAYMENTS: usize = 200;
const CLIENTS: usize = 12;
const MIN_KILLS: usize = 3;
/// Bounds on each phase, so that a bug fails the test instead of hanging it.
const CLIENT_PHASE_LIMIT: Duration = Duration::from_secs(150);
const SETTLE_LIMIT: Duration = Duration::from_secs(90);
const PSP_KEY: &str = "psk_crash";
const PSP_SECRET: &str = "whsec_crash";

/// A child process that is killed (SIGKILL) when dropped, so that a failing test leaves none.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ferropay server under test, killed and restarted on the same port and database.
struct Server {
    port: u16,
    database_url: String,
    psp_url: String,
    log: PathBuf,
    process: Option<Process>,
    http: reqwest::Client,
}

impl Server {
    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `ferropay serve` and waits until `/healthz` answers (the port may take a moment
    /// to be free again after a kill).
    async fn start(&mut self) {
        assert!(self.process.is_none());
        let child = spawn_until_healthy(&self.http, &self.base_url(), &self.log, |log| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_ferropay"));
            command
                .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
                .args(["--database-url", &self.database_url])
                .args(["--psp-url", &self.psp_url])
                .args(["--psp-api-key", PSP_KEY, "--psp-webhook-secret", PSP_SECRET])
                .args([
                    "--poll-after-s",
                    "1",
                    "--lease-s",
                    "3",
                    "--job-concurrency",
                    "8",
                ])
                .env("FERROPAY_LOG", "warn,ferropay::jobs=error")
                .stdout(Stdio::null())
                .stderr(log);
            command
        })
        .await;
        self.process = Some(Process(child));
    }

    /// SIGKILL: no shutdown, no flush, requests and jobs cut wherever they are.
    fn kill(&mut self) {
        let mut process = self.process.take().expect("running");
        process.0.kill().expect("SIGKILL");
        process.0.wait().expect("reaped");
    }
}

/// What a client saw on its way to a 201.
#[derive(Default)]
struct ClientCounts {
    unavailable_503: AtomicUsize,
    key_in_use_409: AtomicUsize,
    connection_errors: AtomicUsize,
}

/// How a buyer treats the hosted page.
#[derive(Clone, Copy, Debug)]
enum Buyer {
    Pays(&'static str),
    ThreeDs {
        code: &'static str,
    },
    /// A processing error first, then a good card.
    RetriesAfterError,
    /// Never pays: the session expires.
    Abandons,
}

fn buyer_for(i: usize) -> Buyer {
    match i % 20 {
        0..=10 => Buyer::Pays(CARD_OK),
        11 | 12 => Buyer::Pays(CARD_DECLINED),
        13 => Buyer::Pays(CARD_NO_FUNDS),
        14 => Buyer::ThreeDs { code: "123456" },
        15 => Buyer::ThreeDs { code: "000000" },
        16 | 17 => Buyer::Pays(CARD_REVIEW),
        18 => Buyer::RetriesAfterError,
        _ => Buyer::Abandons,
    }
}

/// Payment `i`'s orders: one to one of five sellers, and every third a second seller.
fn orders_for(i: usize) -> Vec<(String, i64)> {
    let mut orders = vec![(format!("seller_{}", i % 5), 100 + i as i64)];
    if i.is_multiple_of(3) {
        orders.push(("seller_shared".to_owned(), 77));
    }
    orders
}

/// Creates payment `i` through the API, retrying passing failures with the same key.
async fn create(
    http: &reqwest::Client,
    base_url: &str,
    api_key: &str,
    i: usize,
    counts: &ClientCounts,
) -> Value {
    let orders: Vec<Value> = orders_for(i)
        .iter()
        .enumerate()
        .map(|(n, (seller, amount))| json!({"order_id": format!("o{n}"), "seller_id": seller, "amount": amount}))
        .collect();
    let body = json!({
        "checkout_id": format!("chk_crash_{i}"),
        "buyer": {"id": format!("buyer_{i}")},
        "currency": "USD",
        "orders": orders,
    });
    let deadline = Instant::now() + CLIENT_PHASE_LIMIT;
    loop {
        assert!(Instant::now() < deadline, "payment {i} never created");
        let sent = http
            .post(format!("{base_url}/v1/payments"))
            .bearer_auth(api_key)
            .header("Idempotency-Key", format!("crash-key-{i}"))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == StatusCode::CREATED => {
                return response.json().await.unwrap();
            }
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                assert!(response.headers().get("Retry-After").is_some());
                counts.unavailable_503.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) if response.status() == StatusCode::CONFLICT => {
                let error: Value = response.json().await.unwrap_or_default();
                assert_eq!(
                    error["error"]["code"], "idempotency_key_in_use",
                    "payment {i}"
                );
                counts.key_in_use_409.fetch_add(1, Ordering::Relaxed);
            }
            Ok(response) => panic!("payment {i}: unexpected {}", response.status()),
            Err(_) => {
                counts.connection_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let pause_ms = rand::rng().random_range(50..250);
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
}

/// The buyer on the sandbox's hosted page (which the sandbox never faults).
async fn pay(http: &reqwest::Client, payment: &Value, buyer: Buyer) {
    let url = payment["redirect_url"].as_str().expect("redirect_url");
    let card = |number: &'static str| {
        let url = url.to_owned();
        async move {
            http.post(url)
                .form(&[
                    ("card_number", number),
                    ("exp", "12/39"),
                    ("cvc", "123"),
                    ("name", "Ada"),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    match buyer {
        Buyer::Abandons => {}
        Buyer::Pays(number) => {
            card(number).await;
        }
        Buyer::ThreeDs { code } => {
            if card(CARD_3DS).await == StatusCode::OK {
                http.post(format!("{url}/challenge"))
                    .form(&[("code", code)])
                    .send()
                    .await
                    .unwrap();
            }
        }
        Buyer::RetriesAfterError => {
            // The page comes back (200) saying why, for another try.
            if card(CARD_PROCESSING_ERROR).await == StatusCode::OK {
                card(CARD_OK).await;
            }
        }
    }
}

/// The sandbox's own record of payment `reference`: its sessions (retrying injected faults, and
/// a sandbox process that is still starting: up to 30 s, not a count of tries that a slow start
/// on a loaded machine could use up in a fraction of a second).
async fn sandbox_sessions(
    http: &reqwest::Client,
    sandbox_url: &str,
    reference: &str,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let response = http
            .get(format!("{sandbox_url}/v1/payment_sessions"))
            .query(&[("reference", reference)])
            .bearer_auth(PSP_KEY)
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == StatusCode::OK
        {
            let body: Value = response.json().await.unwrap();
            return body["data"].as_array().cloned().unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the sandbox did not list sessions for {reference} within 30 s");
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    count_on(store, sql).await
}

async fn payments_survive_crashes_faults_and_lost_webhooks(db: Db) {
    let Some(db) = TestDb::create(db).await else {
        return;
    };
    let started = Instant::now();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let ferropay_port = fixed_port();
    let sandbox_addr = format!("127.0.0.1:{}", fixed_port());
    let sandbox_url = format!("http://{sandbox_addr}");
    let log = std::env::temp_dir().join(format!("ferropay-crash-{}.log", uuid::Uuid::now_v7()));

    let (code, stdout, stderr) = run_cli(&["api-key", "create", "--database-url", &db.url]);
    assert_eq!(code, 0, "{stderr}");
    let api_key = serde_json::from_str::<Value>(&stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    let _sandbox = Process(
        Command::new(env!("CARGO_BIN_EXE_ferropay"))
            .args(["sandbox-psp", "--listen", &sandbox_addr])
            .args([
                "--webhook-url",
                &format!("http://127.0.0.1:{ferropay_port}/webhooks/psp/sandbox"),
            ])
            .args(["--webhook-secret", PSP_SECRET, "--api-key", PSP_KEY])
            .args(["--error-rate", "0.2", "--webhook-duplicate-rate", "0.3"])
            .args(["--webhook-drop-rate", "0.2", "--webhook-reorder"])
            .args(["--review-delay-s", "1", "--session-ttl-s", "12"])
            .args([
                "--webhook-retry-base-ms",
                "100",
                "--webhook-retry-max-ms",
                "400",
            ])
            .args(["--webhook-max-attempts", "3"])
            .env("FERROPAY_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ferropay sandbox-psp"),
    );
    sandbox_sessions(&http, &sandbox_url, "ping").await;

    let server = Arc::new(Mutex::new(Server {
        port: ferropay_port,
        database_url: db.url.clone(),
        psp_url: sandbox_url.clone(),
        log: log.clone(),
        process: None,
        http: http.clone(),
    }));
    server.lock().await.start().await;
    let base_url = server.lock().await.base_url();

    // The killer: SIGKILL at random moments while the clients run (and at least three times).
    let clients_done = Arc::new(tokio::sync::Notify::new());
    let killer = {
        let server = server.clone();
        let clients_done = clients_done.clone();
        tokio::spawn(async move {
            let mut kills = 0;
            let mut done = false;
            loop {
                let pause = Duration::from_millis(rand::rng().random_range(1_500..4_500));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = clients_done.notified(), if !done => done = true,
                }
                if done && kills >= MIN_KILLS {
                    return kills;
                }
                let mut server = server.lock().await;
                server.kill();
                kills += 1;
                // Down for a while, as a crashed instance is until it is restarted: webhooks
                // sent meanwhile exhaust their three attempts and are lost.
                let down_ms = rand::rng().random_range(300..1_500);
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                server.start().await;
            }
        })
    };

    let counts = ClientCounts::default();
    let (http_ref, base_ref, key_ref, counts_ref) =
        (&http, base_url.as_str(), api_key.as_str(), &counts);
    let payments: Vec<(usize, Value)> = futures_util::stream::iter(0..PAYMENTS)
        .map(|i| async move {
            let payment = create(http_ref, base_ref, key_ref, i, counts_ref).await;
            // The buyer takes a moment on the hosted page: the run spreads over the kills.
            let typing_ms = rand::rng().random_range(200..2_000);
            tokio::time::sleep(Duration::from_millis(typing_ms)).await;
            pay(http_ref, &payment, buyer_for(i)).await;
            (i, payment)
        })
        .buffer_unordered(CLIENTS)
        .collect()
        .await;
    let client_phase = started.elapsed();
    clients_done.notify_one();
    let kills = killer.await.unwrap();

    // Settling: webhooks that got through, and the poller for the ones that did not.
    let store = Store::open(&db.url, 2).await.unwrap();
    let settle_started = Instant::now();
    loop {
        let pending = count(
            &store,
            "SELECT COUNT(*) FROM payments WHERE status IN ('requires_payment', 'processing')",
        )
        .await;
        let unfinished_jobs = count(
            &store,
            "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done', 'dead')",
        )
        .await;
        if pending == 0 && unfinished_jobs == 0 {
            break;
        }
        assert!(
            settle_started.elapsed() < SETTLE_LIMIT,
            "{pending} payments still pending, {unfinished_jobs} jobs unfinished; see {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every payment agrees with the sandbox's record; one session each.
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM payments").await,
        PAYMENTS as i64
    );
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut owed_minor: HashMap<String, i64> = HashMap::new();
    let mut poller_settled = 0;
    for (i, payment) in &payments {
        let id = payment["id"].as_str().unwrap();
        let row = sqlx::query("SELECT status FROM payments WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap();
        let status: String = row.get("status");
        let sessions = sandbox_sessions(&http, &sandbox_url, id).await;
        assert_eq!(
            sessions.len(),
            1,
            "payment {i} ({id}): one PSP session, never two"
        );
        assert_eq!(
            sessions[0]["status"].as_str().unwrap(),
            status,
            "payment {i} ({id}) agrees with the PSP"
        );
        if matches!(buyer_for(*i), Buyer::Abandons) {
            assert_eq!(status, "expired", "payment {i} was never paid");
        }
        if status == "succeeded" {
            for (seller, amount) in orders_for(*i) {
                *owed_minor.entry(seller).or_default() += amount;
            }
        }
        let final_events = sqlx::query(
            "SELECT COUNT(*) AS n FROM webhook_events WHERE reference = $1 AND event_type = $2",
        )
        .bind(id)
        .bind(format!("payment.{status}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>("n");
        poller_settled += usize::from(final_events == 0);
        *by_status.entry(status).or_default() += 1;
    }

    // No buyer charged twice: one capture per succeeded payment, none for the others.
    let succeeded = by_status.get("succeeded").copied().unwrap_or(0) as i64;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM journal_transactions WHERE kind = 'capture'"
        )
        .await,
        succeeded
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM (SELECT payment_id FROM journal_transactions \
             WHERE kind = 'capture' GROUP BY payment_id HAVING COUNT(*) > 1) AS doubled"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM journal_transactions t JOIN payments p ON p.id = t.payment_id \
             WHERE t.kind = 'capture' AND p.status <> 'succeeded'"
        )
        .await,
        0
    );

    // The books: the real binary's verify, and each wallet against what the PSP says was sold.
    let (code, stdout, stderr) = run_cli(&["ledger", "verify", "--database-url", &db.url]);
    assert_eq!(code, 0, "ledger verify: {stdout} {stderr}");
    let verify: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(verify["wallets_match"], true);
    let base_url = server.lock().await.base_url();
    let mut sellers: Vec<String> = (0..5).map(|k| format!("seller_{k}")).collect();
    sellers.push("seller_shared".into());
    for seller in &sellers {
        let wallet: Value = http
            .get(format!("{base_url}/v1/sellers/{seller}/wallet"))
            .bearer_auth(&api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let held = wallet["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == "USD")
            .map_or(0, |b| b["amount"].as_i64().unwrap());
        assert_eq!(
            held,
            owed_minor.get(seller).copied().unwrap_or(0),
            "{seller}'s wallet"
        );
    }

    // No job left behind outside the dead-letter queue.
    let stuck = count(
        &store,
        "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done', 'dead')",
    )
    .await;
    assert_eq!(stuck, 0);
    let dead = count(&store, "SELECT COUNT(*) FROM jobs WHERE status = 'dead'").await;
    let jobs_done = count(&store, "SELECT COUNT(*) FROM jobs WHERE status = 'done'").await;
    let webhook_events = count(&store, "SELECT COUNT(*) FROM webhook_events").await;

    println!(
        "crash test ({}): {PAYMENTS} payments by {CLIENTS} clients; ferropay SIGKILLed {kills} times; \
         final statuses {by_status:?}; {poller_settled} settled by the poller (their final webhook \
         never arrived); PSP sessions per payment: 1; captures: {succeeded} (none doubled); \
         ledger verify: ok, {} transactions; wallets match the PSP's record for {} sellers; \
         distinct webhook events received: {webhook_events}; client retries: {} 503, {} 409, \
         {} connection errors; jobs: {jobs_done} done, {dead} dead, {stuck} stuck; \
         client phase {:.1} s, total {:.1} s",
        store.backend().name(),
        verify["transactions"],
        sellers.len(),
        counts.unavailable_503.load(Ordering::Relaxed),
        counts.key_in_use_409.load(Ordering::Relaxed),
        counts.connection_errors.load(Ordering::Relaxed),
        client_phase.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    assert!(kills >= MIN_KILLS);
    store.close().await;
    server.lock().await.kill();
    let _ = std::fs::remove_file(&log);
}

db_test!(payments_survive_crashes_faults_and_lost_webhooks);
