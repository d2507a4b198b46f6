//! The test harness: fresh databases (SQLite file or PostgreSQL database), `spawn_app` on random
//! ports, an HTTP client that acts as checkout, buyer and PSP, and waiting helpers with bounds.
//!
//! PostgreSQL tests run when `FERROPAY_TEST_DATABASE_URL` is set (an admin URL such as
//! `postgres://postgres@127.0.0.1:5432/test`); each test gets its own database, dropped at the
//! end. Set and unreachable is a failure, not a skip.

use std::time::{Duration, Instant};

use ferropay::jobs::{JobsConfig, RetryPolicy};
use ferropay::ledger::verify::VerifyReport;
use ferropay::secret::Secret;
use ferropay_cli::serve::{self, PspChoice, Running, ServeConfig};
use reqwest::StatusCode;
use sandbox_psp::SandboxConfig;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};

pub const WEBHOOK_SECRET: &str = "whsec_test_secret";
pub const PSP_API_KEY: &str = "psk_test_key";

pub const CARD_OK: &str = "4242 4242 4242 4242";
pub const CARD_DECLINED: &str = "4000 0000 0000 0002";
pub const CARD_NO_FUNDS: &str = "4000 0000 0000 9995";
pub const CARD_3DS: &str = "4000 0025 0000 3155";
pub const CARD_REVIEW: &str = "4000 0000 0000 0259";
pub const CARD_PROCESSING_ERROR: &str = "4000 0000 0000 0119";

/// Which database a test runs on.
#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A database that exists for one test and is removed after it.
pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    PgDatabase {
        admin_url: String,
        name: String,
    },
    /// A database the test owns otherwise (its own server, removed with it).
    Nothing,
}

impl TestDb {
    /// A database at `url` that the test removes by other means (a server of its own).
    pub fn unmanaged(url: String) -> Self {
        Self {
            url,
            cleanup: Cleanup::Nothing,
        }
    }

    /// A fresh database, or `None` for PostgreSQL when no test database is configured.
    pub async fn create(db: Db) -> Option<Self> {
        match db {
            Db::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("ferropay-test-{}", uuid::Uuid::now_v7()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(Self {
                    url: format!("sqlite://{}/ferropay.db", dir.display()),
                    cleanup: Cleanup::File(dir),
                })
            }
            Db::Postgres => {
                let Ok(admin_url) = std::env::var("FERROPAY_TEST_DATABASE_URL") else {
                    eprintln!("FERROPAY_TEST_DATABASE_URL is not set: skipping the PostgreSQL run");
                    return None;
                };
                let name = format!("ferropay_t_{}", uuid::Uuid::now_v7().simple());
                sqlx::any::install_default_drivers();
                let mut admin = sqlx::AnyConnection::connect(&admin_url)
                    .await
                    .expect("FERROPAY_TEST_DATABASE_URL is set but PostgreSQL is unreachable");
                admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create the test database");
                let _ = admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(base, _)| base)
                    .expect("URL has a path");
                Some(Self {
                    url: format!("{base}/{name}"),
                    cleanup: Cleanup::PgDatabase { admin_url, name },
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::PgDatabase { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs inside the test's runtime: use a thread with a runtime of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime
                        .block_on(async {
                            let mut admin = sqlx::AnyConnection::connect(&admin_url).await?;
                            admin
                                .execute(sqlx::AssertSqlSafe(format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                )))
                                .await?;
                            Ok::<_, sqlx::Error>(())
                        })
                        .map_err(std::io::Error::other)
                })
                .join();
            }
        }
    }
}

/// What a sibling instance may differ in.
pub struct SiblingOptions {
    /// The first instance's keys make one chain (`spawn_sibling`'s default).
    pub ledger_keys: Option<ferropay::chain_keys::ChainKeys>,
    pub jobs: JobsConfig,
    pub reconcile_at: Option<ferropay::reconcile::schedule::TimeOfDay>,
}

/// A running ferropay with its in-process sandbox, and a client that talks to both.
pub struct TestApp {
    pub running: Option<Running>,
    pub base_url: String,
    pub sandbox_url: String,
    pub api_key: String,
    pub http: reqwest::Client,
    pub db: TestDb,
}

/// Settings a test may change before the app starts.
pub struct AppOptions {
    pub sandbox: SandboxConfig,
    pub psp_url: Option<String>,
    pub platform_fee_bps: u32,
    /// The PSP API key ferropay sends to a `psp_url` PSP.
    pub psp_api_key: String,
    pub poll_after_ms: i64,
    pub jobs: JobsConfig,
    /// Relay the outbox to NATS JetStream.
    pub nats: Option<ferropay::outbox::nats::NatsConfig>,
    /// Relay the outbox to Kafka (beside NATS, if both are set).
    pub kafka: Option<ferropay::outbox::kafka::KafkaConfig>,
    /// A private CA for an `https://` `psp_url`.
    pub psp_ca_pem: Option<Vec<u8>>,
    /// Webhooks to merchants: private destinations allowed, quick retries.
    pub webhooks: ferropay::webhooks::WebhookConfig,
    /// Stripe and Adyen (at the fakes) beside the sandbox, and the routing rule.
    pub psps: ferropay::psp::config::PspSettings,
    /// The ledger chain's keys; `None`: where `ferropay serve` would find them (on SQLite a
    /// `ledger-keys` file beside the database, created; on PostgreSQL none, an unkeyed chain),
    /// so that the `ferropay` commands a test runs on the same database agree.
    pub ledger_keys: Option<ferropay::chain_keys::ChainKeys>,
    /// Signed ledger checkpoints appended here every 50 ms while the head moves.
    pub checkpoint_file: Option<std::path::PathBuf>,
    /// The nightly reconciliation's time of day, and the payout schedule, if any.
    pub reconcile_at: Option<ferropay::reconcile::schedule::TimeOfDay>,
    pub payout_schedule: Option<ferropay::payout::schedule::PayoutSchedule>,
    /// When a UTC day counts as closed for reconciliation: by default minus a day, so that tests
    /// reconcile the day they paid on for good (production: 0, at midnight UTC).
    pub reconcile_day_close_lag_ms: i64,
    /// The HTTP server's limits (production's defaults unless a test changes them).
    pub limits: ferropay_http::ServerLimits,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            sandbox: SandboxConfig {
                api_key: PSP_API_KEY.into(),
                webhook_secret: WEBHOOK_SECRET.into(),
                review_delay_ms: 300,
                webhook_retry_base_ms: 50,
                webhook_retry_max_ms: 1_000,
                ..SandboxConfig::default()
            },
            psp_url: None,
            platform_fee_bps: 0,
            psp_api_key: PSP_API_KEY.into(),
            poll_after_ms: 60_000,
            jobs: test_jobs_config(),
            nats: None,
            kafka: None,
            psp_ca_pem: None,
            webhooks: test_webhook_config(),
            psps: Default::default(),
            ledger_keys: None,
            checkpoint_file: None,
            reconcile_at: None,
            payout_schedule: None,
            reconcile_day_close_lag_ms: -ferropay::reconcile::days::DAY_MS,
            limits: ferropay_http::ServerLimits::default(),
        }
    }
}

/// Webhooks to merchants as tests send them: to the test's own receivers on loopback, with
/// quick retries and dispatch.
pub fn test_webhook_config() -> ferropay::webhooks::WebhookConfig {
    ferropay::webhooks::WebhookConfig {
        allow_private_urls: true,
        timeout_ms: 5_000,
        retry: RetryPolicy {
            base_delay_ms: 50,
            max_delay_ms: 400,
            max_attempts: u32::MAX,
            retry_window_ms: 0,
        },
        dispatch_idle_ms: 25,
        ..ferropay::webhooks::WebhookConfig::default()
    }
}

/// The job queue as tests run it: quick retries and quick pick-up, so that background work
/// shows within a test's patience.
pub fn test_jobs_config() -> JobsConfig {
    JobsConfig {
        retry: RetryPolicy {
            base_delay_ms: 50,
            max_delay_ms: 1_000,
            max_attempts: 20,
            retry_window_ms: 0,
        },
        idle_poll_ms: 25,
        ..JobsConfig::default()
    }
}

pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, AppOptions::default()).await
}

pub async fn spawn_app_with(db: Db, options: AppOptions) -> Option<TestApp> {
    let db = TestDb::create(db).await?;
    Some(spawn_app_in(db, options).await)
}

/// A running app on `db`.
pub async fn spawn_app_in(db: TestDb, options: AppOptions) -> TestApp {
    let psp = match options.psp_url {
        None => PspChoice::InProcessSandbox {
            listen: "127.0.0.1:0".parse().unwrap(),
            sandbox: options.sandbox,
        },
        Some(url) => PspChoice::Remote {
            url,
            api_key: Secret::new(options.psp_api_key),
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            root_ca_pem: options.psp_ca_pem,
        },
    };
    let running = serve::start(ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        max_db_connections: 8,
        public_url: None,
        psp,
        psps: options.psps,
        platform_fee_bps: options.platform_fee_bps,
        payout_schedule: options.payout_schedule,
        poll_after_ms: options.poll_after_ms,
        jobs: options.jobs,
        reconcile_at: options.reconcile_at,
        reconcile_day_close_lag_ms: options.reconcile_day_close_lag_ms,
        nats: options.nats,
        kafka: options.kafka,
        retention: None,
        engine: ferropay::engine::EngineConfig::default(),
        webhooks: options.webhooks,
        ledger_keys: options.ledger_keys.or_else(|| {
            ferropay_cli::ledger_keys::resolve(&Default::default(), &db.url).expect("chain keys")
        }),
        checkpoint_file: options.checkpoint_file,
        checkpoint_every_ms: 50,
        limits: options.limits,
    })
    .await
    .expect("ferropay starts");
    let api_key = ferropay::api_keys::create(&running.service.store, "test")
        .await
        .expect("api key")
        .secret;
    let sandbox_url = running
        .sandbox
        .as_ref()
        .map(|s| s.base_url.clone())
        .unwrap_or_default();
    TestApp {
        base_url: running.public_url.clone(),
        sandbox_url,
        api_key,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        running: Some(running),
        db,
    }
}

/// A checkout body with two sellers: 1500 to seller_a and 250 to seller_b (USD).
pub fn checkout(checkout_id: &str) -> Value {
    json!({
        "checkout_id": checkout_id,
        "buyer": {"id": "buyer_7", "email": "b@example.com"},
        "currency": "USD",
        "orders": [
            {"order_id": "ord_1", "seller_id": "seller_a", "amount": 1500},
            {"order_id": "ord_2", "seller_id": "seller_b", "amount": 250}
        ]
    })
}

impl TestApp {
    pub fn service(&self) -> &ferropay::Ferropay {
        &self.running.as_ref().expect("running").service
    }

    /// `POST /v1/payments` with a raw body.
    pub async fn post_payment_raw(&self, key: Option<&str>, body: String) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/payments", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("POST /v1/payments")
    }

    pub async fn post_payment(&self, key: &str, body: &Value) -> reqwest::Response {
        self.post_payment_raw(Some(key), body.to_string()).await
    }

    /// Creates a payment and returns its 201 body.
    pub async fn create_payment(&self, checkout_id: &str) -> Value {
        let response = self
            .post_payment(&format!("key-{checkout_id}"), &checkout(checkout_id))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    pub async fn get_payment(&self, payment_id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/v1/payments/{payment_id}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// The buyer submits the hosted page's form; answers the status and the `Location` header.
    pub async fn pay(&self, payment: &Value, card: &str) -> (StatusCode, Option<String>, String) {
        let url = payment["redirect_url"].as_str().expect("redirect_url");
        let page = self.http.get(url).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("card_number"));
        let response = self
            .http
            .post(url)
            .form(&[
                ("card_number", card),
                ("exp", "12/39"),
                ("cvc", "123"),
                ("name", "Ada"),
            ])
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (status, location, response.text().await.unwrap())
    }

    /// Answers the 3-D Secure challenge with `code`.
    pub async fn challenge(&self, payment: &Value, code: &str) -> (StatusCode, Option<String>) {
        let url = format!("{}/challenge", payment["redirect_url"].as_str().unwrap());
        let response = self
            .http
            .post(url)
            .form(&[("code", code)])
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (response.status(), location)
    }

    /// Polls until the payment has `status`, for at most 10 s.
    pub async fn wait_for_status(&self, payment_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let payment = self.get_payment(payment_id).await;
            if payment["status"] == status {
                return payment;
            }
            assert!(
                Instant::now() < deadline,
                "payment {payment_id} still {} after 10 s, waiting for {status}",
                payment["status"]
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `GET /v1/sellers/{seller}/wallet`'s amount in `currency` (0 when none).
    pub async fn wallet_minor(&self, seller_id: &str, currency: &str) -> i64 {
        self.wallet(seller_id, currency).await.0
    }

    /// `POST` a keyed JSON body to `path` (refunds, payouts).
    pub async fn post_keyed(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", key)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// `GET` a JSON resource of the API.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.base_url))
            .bearer_auth(&self.api_key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// The wallet's balance for `currency`: `(amount, available)`, zeros when none.
    pub async fn wallet(&self, seller_id: &str, currency: &str) -> (i64, i64) {
        let wallet = self
            .get_json(&format!("/v1/sellers/{seller_id}/wallet"))
            .await;
        wallet["balances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["currency"] == currency)
            .map(|b| {
                (
                    b["amount"].as_i64().unwrap(),
                    b["available"].as_i64().unwrap(),
                )
            })
            .unwrap_or((0, 0))
    }

    /// Polls `path` (a list under `data`) until the item `id` has `status`, for at most 10 s.
    pub async fn wait_for_item(&self, path: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let list = self.get_json(path).await;
            let item = list["data"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("{id} not in {path}"));
            if item["status"] == status {
                return item;
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {} after 10 s",
                item["status"]
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Creates and pays (4242) a checkout; answers the succeeded payment.
    pub async fn paid_payment(&self, checkout_id: &str) -> Value {
        let payment = self.create_payment(checkout_id).await;
        self.pay(&payment, CARD_OK).await;
        self.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
            .await
    }

    /// The sandbox PSP (back) up at `addr`, where this app was told its PSP is, wired to this
    /// app's webhook; the test's PSP calls go to it from now on.
    pub async fn start_sandbox_at(
        &mut self,
        addr: std::net::SocketAddr,
    ) -> sandbox_psp::SandboxHandle {
        let sandbox = sandbox_psp::spawn(
            tokio::net::TcpListener::bind(addr).await.unwrap(),
            SandboxConfig {
                webhook_url: format!("{}/webhooks/psp/sandbox", self.base_url),
                ..AppOptions::default().sandbox
            },
        )
        .await
        .unwrap();
        self.sandbox_url = sandbox.base_url.clone();
        sandbox
    }

    /// `GET /metrics`, as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The sum of all postings on `account` in `currency`.
    pub async fn account_sum(&self, account: &str, currency: &str) -> i64 {
        use sqlx::Row;
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM postings \
             WHERE account = $1 AND currency = $2",
        )
        .bind(account)
        .bind(currency)
        .fetch_one(self.service().store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
    }

    pub async fn verify_ledger(&self) -> VerifyReport {
        self.service().verify_ledger().await.expect("verify")
    }

    /// Counts rows with a `SELECT COUNT(*) …` statement.
    pub async fn count(&self, sql: &'static str) -> i64 {
        count_on(&self.service().store, sql).await
    }

    /// Sessions the sandbox PSP holds for a merchant reference (our payment id). Retries the
    /// sandbox's injected faults, at most 50 times.
    pub async fn psp_sessions_for(&self, reference: &str) -> Vec<Value> {
        for _ in 0..50 {
            let response = self
                .http
                .get(format!("{}/v1/payment_sessions", self.sandbox_url))
                .query(&[("reference", reference)])
                .bearer_auth(PSP_API_KEY)
                .send()
                .await;
            if let Ok(response) = response
                && response.status() == StatusCode::OK
            {
                let body: Value = response.json().await.unwrap();
                return body["data"].as_array().cloned().unwrap_or_default();
            }
        }
        panic!("the sandbox did not list sessions in 50 tries");
    }

    /// A second ferropay instance on this app's database, registering at this app's sandbox
    /// PSP (several stateless instances on one PostgreSQL, as in production).
    pub async fn spawn_sibling(&self) -> Running {
        self.spawn_sibling_with(SiblingOptions {
            ledger_keys: self.service().store.chain_keys().cloned(),
            jobs: test_jobs_config(),
            reconcile_at: None,
        })
        .await
    }

    /// [`Self::spawn_sibling`] with its own chain keys, jobs' lease and nightly reconciliation.
    pub async fn spawn_sibling_with(&self, options: SiblingOptions) -> Running {
        serve::start(ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: self.db.url.clone(),
            max_db_connections: 8,
            public_url: None,
            psp: PspChoice::Remote {
                url: self.sandbox_url.clone(),
                api_key: Secret::new(PSP_API_KEY),
                webhook_secret: Secret::new(WEBHOOK_SECRET),
                root_ca_pem: None,
            },
            psps: Default::default(),
            platform_fee_bps: 0,
            payout_schedule: None,
            poll_after_ms: 60_000,
            jobs: options.jobs,
            reconcile_at: options.reconcile_at,
            reconcile_day_close_lag_ms: -ferropay::reconcile::days::DAY_MS,
            nats: None,
            kafka: None,
            retention: None,
            engine: ferropay::engine::EngineConfig::default(),
            webhooks: test_webhook_config(),
            ledger_keys: options.ledger_keys,
            checkpoint_file: None,
            checkpoint_every_ms: 0,
            limits: ferropay_http::ServerLimits::default(),
        })
        .await
        .expect("a second instance starts")
    }

    /// Sends a webhook as the PSP would, signed with `secret` at `timestamp_s`.
    pub async fn send_webhook(
        &self,
        body: &str,
        secret: &str,
        timestamp_s: i64,
    ) -> reqwest::Response {
        self.send_webhook_to(&self.base_url, body, secret, timestamp_s)
            .await
    }

    /// The same, to the instance at `base_url`.
    pub async fn send_webhook_to(
        &self,
        base_url: &str,
        body: &str,
        secret: &str,
        timestamp_s: i64,
    ) -> reqwest::Response {
        self.http
            .post(format!("{base_url}/webhooks/psp/sandbox"))
            .header("Content-Type", "application/json")
            .header(
                "Sandbox-Signature",
                sandbox_psp::sign(secret, timestamp_s, body.as_bytes()),
            )
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }
}

/// Runs the real `ferropay` binary with `args`; answers its exit code, stdout and stderr.
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    run_cli_with_env(args, &[])
}

/// [`run_cli`] with these environment variables set as well.
pub fn run_cli_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferropay"))
        .args(args)
        .envs(env.iter().copied())
        .env("FERROPAY_LOG", "warn")
        .output()
        .expect("run ferropay");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A loopback address where nothing listens (yet): bound, then let go.
pub fn parked_addr() -> std::net::SocketAddr {
    let parked = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    parked.local_addr().unwrap()
}

/// A free loopback port below the kernel's ephemeral range, for a server that is killed and
/// restarted on the same port: no client socket of another test can be handed that port while
/// the server is down, as it could an ephemeral one.
pub fn fixed_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000.min(ephemeral_low / 2);
    for _ in 0..200 {
        let port = rand::random_range(low..ephemeral_low);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    parked_addr().port()
}

/// Waits up to `limit` for `check` to hold, looking every 25 ms; panics with `what` if not.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Counts rows with a `SELECT COUNT(*) …` statement on `store`.
pub async fn count_on(store: &ferropay::store::Store, sql: &'static str) -> i64 {
    use sqlx::Row;
    let row = sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .expect("count");
    row.try_get::<i64, _>(0).expect("count is an integer")
}

/// The body of a PSP webhook event `id` of type `kind` (`payment.succeeded`) about `payment`
/// (a payment as the API shows it), as the sandbox would send it.
pub fn payment_event(id: &str, kind: &str, payment: &Value) -> String {
    json!({
        "id": id,
        "type": kind,
        "created": now_s(),
        "data": {
            "token": payment["redirect_url"].as_str().unwrap().rsplit('/').next(),
            "reference": payment["id"],
            "psp_reference": format!("psp_{}", payment["id"].as_str().unwrap()),
            "amount": payment["amount"],
            "currency": payment["currency"],
            "status": kind.trim_start_matches("payment."),
            "failure_code": null
        }
    })
    .to_string()
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Declares a test that runs once on SQLite and once on PostgreSQL: `db_test!(name);` for an
/// `async fn name(db: Db)` in the same module.
#[macro_export]
macro_rules! db_test {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Db::Postgres).await
                }
            )+
        }
    };
}

/// Starts the real `ferropay serve` that `command` builds (called afresh for each try, with the
/// log file its stderr appends to) and answers once its `/healthz` does. A child that exits at
/// once — its port still held after a SIGKILL — is started again; 30 s in all.
pub async fn spawn_until_healthy(
    http: &reqwest::Client,
    base_url: &str,
    log: &std::path::Path,
    mut command: impl FnMut(std::fs::File) -> std::process::Command,
) -> std::process::Child {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the server's log file");
        let mut child = command(file).spawn().expect("spawn ferropay serve");
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                break; // exited (the port still taken after a kill): start again
            }
            let health = http.get(format!("{base_url}/healthz")).send().await;
            if health.is_ok_and(|r| r.status() == StatusCode::OK) {
                return child;
            }
            assert!(
                Instant::now() < deadline,
                "ferropay did not come up; see {log:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            Instant::now() < deadline,
            "ferropay kept exiting; see {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
