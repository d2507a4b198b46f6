//! Failing infrastructure: a PostgreSQL restarted under load, a NATS server stopped and started
//! again. Requests fail fast with 503 and `Retry-After` (no request waits longer than the pool's
//! acquire timeout and a little), nothing answered as done is lost, and ferropay recovers by
//! itself, without a restart.
//!
//! Each test starts servers of its OWN (never the shared ones): PostgreSQL 15 with `initdb` and
//! `pg_ctl` on a free port and a temporary data folder (as the `postgres` user when the tests
//! run as root, which PostgreSQL refuses), and `nats-server -js` on a free port and a temporary
//! store. Skipped where those programs are not installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull};
use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;
use tokio::sync::Mutex;

use crate::helpers::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const NATS_SERVER: &str = "/usr/sbin/nats-server";

/// A request makes a few database calls (a payment: the insert, then giving its key back when
/// that failed), each waiting at most the pool's acquire timeout
/// (`ferropay::store::ACQUIRE_TIMEOUT_MS`, 3 s) while the database is away: a few of those, far
/// from a hang (each call waited up to 30 s before).
const FAIL_FAST_LIMIT: Duration = Duration::from_secs(15);

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .map(|line| line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs `command` to its end; panics with its output if it fails.
fn run(mut command: Command) {
    let output = command.output().expect("run a PostgreSQL program");
    assert!(
        output.status.success(),
        "{command:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A PostgreSQL server of this test's own, removed when dropped.
struct OwnPostgres {
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl OwnPostgres {
    fn start() -> Option<Self> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            eprintln!("{PG_BIN}/initdb is not installed: skipping");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ferropay-own-pg-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = running_as_root();
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&dir);
            run(chown);
        }
        let postgres = Self {
            dir,
            port: fixed_port(),
            as_postgres,
        };
        let mut initdb = postgres.program("initdb");
        initdb.arg("-D").arg(postgres.data()).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb);
        postgres.pg_ctl_start();
        Some(postgres)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn program(&self, name: &str) -> Command {
        let path = Path::new(PG_BIN).join(name);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl_start(&self) {
        let mut start = self.program("pg_ctl");
        start
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .stdout(Stdio::null());
        run(start);
    }

    /// Stops the server at once, as a crash would (`-m immediate`: no checkpoint, sessions cut).
    fn stop_immediately(&self) {
        let mut stop = self.program("pg_ctl");
        stop.arg("-D")
            .arg(self.data())
            .args(["-w", "-m", "immediate", "stop"])
            .stdout(Stdio::null());
        run(stop);
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = self
            .program("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the clients saw while the database went away and came back.
#[derive(Default)]
struct Seen {
    created: Mutex<Vec<Value>>,
    unavailable_503: AtomicUsize,
    slowest_ms: AtomicUsize,
    /// The answer that took longest, for the failure message.
    slowest: Mutex<String>,
    other: Mutex<Vec<String>>,
}

/// Creates payments until `stop`, each with a key of its own; a 201 is a payment the client
/// was told exists, and the buyer then pays it.
async fn client(app: &TestApp, n: usize, seen: &Seen, stop: &AtomicBool) {
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let checkout_id = format!("chk_outage_{n}_{i}");
        let started = Instant::now();
        let response = app
            .http
            .post(format!("{}/v1/payments", app.base_url))
            .bearer_auth(&app.api_key)
            .header("Idempotency-Key", format!("key-{checkout_id}"))
            .json(&checkout(&checkout_id))
            .send()
            .await;
        let elapsed_ms = started.elapsed().as_millis() as usize;
        if seen.slowest_ms.fetch_max(elapsed_ms, Ordering::Relaxed) < elapsed_ms {
            *seen.slowest.lock().await = match &response {
                Ok(response) => format!("{} after {elapsed_ms} ms", response.status()),
                Err(error) => format!("{error} after {elapsed_ms} ms"),
            };
        }
        match response {
            Ok(response) if response.status() == StatusCode::CREATED => {
                let payment: Value = response.json().await.unwrap();
                app.pay(&payment, CARD_OK).await;
                seen.created.lock().await.push(payment);
            }
            Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                assert!(
                    response.headers().contains_key("retry-after"),
                    "a 503 without Retry-After"
                );
                let body: Value = response.json().await.unwrap();
                assert!(body["error"]["code"].is_string(), "{body}");
                seen.unavailable_503.fetch_add(1, Ordering::Relaxed);
            }
            // The key's request was cut by the outage; the client retries it later.
            Ok(response) if response.status() == StatusCode::CONFLICT => {
                let body: Value = response.json().await.unwrap();
                if body["error"]["code"] != "idempotency_key_in_use" {
                    seen.other.lock().await.push(format!("409: {body}"));
                }
            }
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                seen.other.lock().await.push(format!("{status}: {body}"));
            }
            Err(error) => seen.other.lock().await.push(format!("transport: {error}")),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_under_load_fails_fast_and_loses_nothing() {
    let Some(postgres) = OwnPostgres::start() else {
        return;
    };
    let app = spawn_app_in(TestDb::unmanaged(postgres.url()), AppOptions::default()).await;
    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    let load = futures_util::future::join_all((0..4).map(|n| client(&app, n, &seen, &stop)));
    let outage = async {
        eventually(Duration::from_secs(60), "payments are made", || async {
            seen.created.lock().await.len() >= 4
        })
        .await;
        // Down as a crash takes it, until the clients have been told 503 a few times.
        postgres.stop_immediately();
        eventually(
            Duration::from_secs(60),
            "requests are refused with 503",
            || async { seen.unavailable_503.load(Ordering::Relaxed) >= 4 },
        )
        .await;
        let before = seen.created.lock().await.len();
        postgres.pg_ctl_start();
        // ferropay recovers without a restart: payments are made again.
        eventually(
            Duration::from_secs(60),
            "payments are made again",
            || async { seen.created.lock().await.len() >= before + 4 },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
    };
    tokio::join!(load, outage);

    let other = seen.other.lock().await;
    assert!(
        other.is_empty(),
        "answers other than 201, 503 and 409 key in use: {other:?}"
    );
    let slowest = Duration::from_millis(seen.slowest_ms.load(Ordering::Relaxed) as u64);
    assert!(
        slowest < FAIL_FAST_LIMIT,
        "a request waited {slowest:?}: {}",
        seen.slowest.lock().await
    );

    // Every payment answered 201 exists, and every one the buyer paid is captured once (the
    // PSP's webhooks refused with 503 during the outage come again).
    let created = seen.created.lock().await.clone();
    for payment in &created {
        app.wait_for_status(payment["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    let report = app.verify_ledger().await;
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.transactions, created.len() as i64);
    assert_eq!(
        app.wallet_minor("seller_a", "USD").await,
        1_500 * created.len() as i64
    );
    eprintln!(
        "PostgreSQL restart: {} payments made, {} requests answered 503, slowest: {}",
        created.len(),
        seen.unavailable_503.load(Ordering::Relaxed),
        seen.slowest.lock().await
    );
}

/// A NATS server of this test's own (JetStream on, its store in a temporary folder), stopped
/// and started again on the same port and store.
struct OwnNats {
    dir: PathBuf,
    port: u16,
    process: Option<Child>,
}

impl OwnNats {
    fn start() -> Option<Self> {
        if !Path::new(NATS_SERVER).exists() {
            eprintln!("{NATS_SERVER} is not installed: skipping");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("ferropay-own-nats-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nats = Self {
            dir,
            port: fixed_port(),
            process: None,
        };
        nats.run();
        Some(nats)
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn run(&mut self) {
        assert!(self.process.is_none());
        let child = Command::new(NATS_SERVER)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.process = Some(child);
    }

    fn stop(&mut self) {
        let mut child = self.process.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for OwnNats {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn unpublished(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL")
        .await
}

async fn nats_stopped_and_started_again_loses_no_event(db: Db) {
    let Some(mut nats) = OwnNats::start() else {
        return;
    };
    let config = ferropay::outbox::nats::NatsConfig::new(nats.url());
    let Some(app) = spawn_app_with(
        db,
        AppOptions {
            nats: Some(config.clone()),
            ..AppOptions::default()
        },
    )
    .await
    else {
        return;
    };
    app.paid_payment("chk_nats_before").await;
    eventually(
        Duration::from_secs(20),
        "the first event is published",
        || async {
            app.count("SELECT COUNT(*) FROM outbox").await == 1 && unpublished(&app).await == 0
        },
    )
    .await;

    // NATS goes away: payments go on, their events wait in the outbox.
    nats.stop();
    for i in 0..3 {
        app.paid_payment(&format!("chk_nats_down_{i}")).await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM outbox").await, 4);
    assert!(unpublished(&app).await > 0, "published with NATS down?");

    // NATS is back (same port, same store): the relay reconnects by itself and sends them.
    nats.run();
    eventually(
        Duration::from_secs(60),
        "the waiting events are published",
        || async { unpublished(&app).await == 0 },
    )
    .await;
    let client = async_nats::connect(config.url.as_str()).await.unwrap();
    let js = jetstream::new(client);
    let stream = js.get_stream(&config.stream).await.unwrap();
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config::default())
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(message) = batch.next().await {
        let message = message.unwrap();
        let event: Value = serde_json::from_slice(&message.payload).unwrap();
        ids.push(event["id"].as_str().unwrap().to_owned());
        message.ack().await.unwrap();
    }
    ids.sort();
    let mut outbox: Vec<String> = sqlx::query("SELECT id FROM outbox")
        .fetch_all(app.service().store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("id"))
        .collect();
    outbox.sort();
    assert_eq!(ids, outbox, "each event in the stream once");
}

crate::db_test!(nats_stopped_and_started_again_loses_no_event);
