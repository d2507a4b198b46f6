//! A server that slow or greedy clients cannot take down. Per API key, a rate (429 with
//! `Retry-After`, other keys unaffected); API requests in flight are capped (503 with
//! `Retry-After`, `/healthz` still answered). And the real binary, under a 1,024 file-descriptor
//! limit, held by 1,100 connections that send nothing or trickle a body: it sheds them (header
//! and body deadlines, a connection cap) while payments are made, paid and their PSP webhooks
//! received.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sandbox_psp::{Faults, SandboxConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::db_test;
use crate::helpers::*;

async fn each_api_key_has_its_rate_and_429_says_when_to_come_back(db: Db) {
    let options = AppOptions {
        limits: ferropay_http::ServerLimits {
            rate_per_key_per_s: 1,
            rate_burst_per_key: 3,
            ..ferropay_http::ServerLimits::default()
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let other_key = ferropay::api_keys::create(&app.service().store, "other")
        .await
        .unwrap()
        .secret;
    let wallet = |key: String| {
        let request = app
            .http
            .get(format!("{}/v1/sellers/seller_a/wallet", app.base_url))
            .bearer_auth(key);
        async move { request.send().await.unwrap() }
    };
    // The burst passes; the next is refused with the wait.
    for _ in 0..3 {
        assert_eq!(wallet(app.api_key.clone()).await.status(), StatusCode::OK);
    }
    let limited = wallet(app.api_key.clone()).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after_s: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after_s), "{retry_after_s}");
    let error: Value = limited.json().await.unwrap();
    assert_eq!(error["error"]["type"], "rate_limit_error");
    assert_eq!(error["error"]["code"], "rate_limited");
    // A refused payment changes nothing.
    let refused = app.post_payment("rate-1", &checkout("chk_rate")).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0);
    // Another key has its own allowance; the health check has none.
    assert_eq!(wallet(other_key).await.status(), StatusCode::OK);
    let health = app
        .http
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // After the wait it was told, the key is served again.
    tokio::time::sleep(Duration::from_secs(retry_after_s)).await;
    let again = app.post_payment("rate-1", &checkout("chk_rate")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
}

async fn requests_past_the_in_flight_cap_are_503_and_health_is_answered(db: Db) {
    let options = AppOptions {
        sandbox: SandboxConfig {
            // Each payment holds its request while the PSP thinks.
            faults: Faults {
                latency_ms: 1_500,
                ..Faults::default()
            },
            ..AppOptions::default().sandbox
        },
        limits: ferropay_http::ServerLimits {
            max_in_flight: 2,
            ..ferropay_http::ServerLimits::default()
        },
        ..AppOptions::default()
    };
    let Some(app) = spawn_app_with(db, options).await else {
        return;
    };
    let app = &app;
    let posts = futures_util::future::join_all((0..6).map(|i| async move {
        let response = app
            .post_payment(&format!("cap-{i}"), &checkout(&format!("chk_cap_{i}")))
            .await;
        let retry_after = response.headers().get("retry-after").cloned();
        (i, response.status(), retry_after)
    }));
    // While the admitted requests wait on the PSP, health is answered, every time it is asked.
    let mut posts = std::pin::pin!(posts);
    let mut health_checks = 0;
    let answers = loop {
        tokio::select! {
            answers = posts.as_mut() => break answers,
            health = app.http.get(format!("{}/healthz", app.base_url)).send() => {
                assert_eq!(health.unwrap().status(), StatusCode::OK);
                health_checks += 1;
            }
        }
    };
    assert!(health_checks > 0);
    let created: Vec<usize> = answers
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::CREATED)
        .map(|(i, _, _)| *i)
        .collect();
    let shed: Vec<&(usize, StatusCode, Option<reqwest::header::HeaderValue>)> = answers
        .iter()
        .filter(|(_, status, _)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    assert!(!created.is_empty() && created.len() <= 2, "{answers:?}");
    assert_eq!(created.len() + shed.len(), 6, "{answers:?}");
    assert!(
        shed.iter().all(|(_, _, retry)| retry.is_some()),
        "{answers:?}"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM payments").await,
        created.len() as i64
    );
    // A shed request is retried with its key and goes through.
    let (i, _, _) = shed[0];
    let retried = app
        .post_payment(&format!("cap-{i}"), &checkout(&format!("chk_cap_{i}")))
        .await;
    assert_eq!(retried.status(), StatusCode::CREATED);
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the attackers saw.
#[derive(Default)]
struct Seen {
    /// Connections opened (or refused at once).
    opened: AtomicUsize,
    /// Connections the server closed (or never served).
    closed: AtomicUsize,
    /// Of those, the ones that sent nothing.
    idle_closed: AtomicUsize,
    /// Slow bodies answered 408.
    timed_out: AtomicUsize,
    /// Connections answered 503 (past the cap).
    busy: AtomicUsize,
}

/// Opens a connection and holds it as long as the server lets it: sends nothing (`trickle`
/// false) or a request whose body comes a byte every 200 ms. Answers how long it was held.
async fn hold(address: String, trickle: bool, seen: Arc<Seen>) -> Duration {
    let started = Instant::now();
    let connected = TcpStream::connect(&address).await;
    seen.opened.fetch_add(1, Ordering::Relaxed);
    let Ok(mut stream) = connected else {
        seen.closed.fetch_add(1, Ordering::Relaxed);
        return started.elapsed();
    };
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    if trickle {
        let head = format!(
            "POST /webhooks/psp/sandbox HTTP/1.1\r\nHost: {address}\r\n\
             Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{"
        );
        if stream.write_all(head.as_bytes()).await.is_ok() {
            loop {
                tokio::select! {
                    read = stream.read(&mut buffer) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&buffer[..n]),
                    },
                    () = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stream.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
    } else {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    }
    if !trickle {
        seen.idle_closed.fetch_add(1, Ordering::Relaxed);
    }
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 408") {
        seen.timed_out.fetch_add(1, Ordering::Relaxed);
    }
    if text.starts_with("HTTP/1.1 503") {
        seen.busy.fetch_add(1, Ordering::Relaxed);
    }
    seen.closed.fetch_add(1, Ordering::Relaxed);
    started.elapsed()
}

/// Sends what `request` builds until it is answered other than 503 or 429 (honouring
/// `Retry-After`) or a connection error, within `deadline`.
async fn insist(
    what: &str,
    deadline: Instant,
    request: impl Fn() -> reqwest::RequestBuilder,
) -> reqwest::Response {
    loop {
        let wait = match request().send().await {
            Ok(response)
                if response.status() == StatusCode::SERVICE_UNAVAILABLE
                    || response.status() == StatusCode::TOO_MANY_REQUESTS =>
            {
                let retry_after_s = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                Duration::from_millis(retry_after_s * 1_000)
            }
            Ok(response) => return response,
            Err(_) => Duration::from_millis(100),
        };
        assert!(Instant::now() < deadline, "{what}: not served in time");
        tokio::time::sleep(wait).await;
    }
}

async fn a_thousand_slow_connections_under_1024_descriptors_do_not_stop_payments(db: Db) {
    let Some(test_db) = TestDb::create(db).await else {
        return;
    };
    let (port, sandbox_port) = (fixed_port(), fixed_port());
    let log = std::env::temp_dir().join(format!("ferropay-limits-{}.log", uuid::Uuid::now_v7()));
    let (code, stdout, stderr) = run_cli(&["api-key", "create", "--database-url", &test_db.url]);
    assert_eq!(code, 0, "{stderr}");
    let api_key = serde_json::from_str::<Value>(&stdout).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    // The real binary, allowed 1,024 open files, with short deadlines so that the test is quick.
    let child = Command::new("prlimit")
        .arg("--nofile=1024:1024")
        .arg(env!("CARGO_BIN_EXE_ferropay"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--sandbox-listen", &format!("127.0.0.1:{sandbox_port}")])
        .args(["--sandbox-api-key", PSP_API_KEY])
        .args(["--database-url", &test_db.url])
        .args([
            "--header-read-timeout-ms",
            "1500",
            "--body-read-timeout-ms",
            "1500",
        ])
        .args(["--max-connections", "600", "--max-in-flight", "256"])
        .env("FERROPAY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit runs ferropay serve");
    let mut server = Process(child);
    let base_url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    eventually(Duration::from_secs(30), "the server answers", || {
        let health = http.get(format!("{base_url}/healthz")).send();
        async move { health.await.is_ok_and(|r| r.status() == StatusCode::OK) }
    })
    .await;

    // 1,100 connections: half send nothing, half trickle a body.
    let seen = Arc::new(Seen::default());
    let address = format!("127.0.0.1:{port}");
    let attackers: Vec<_> = (0..1_100)
        .map(|i| tokio::spawn(hold(address.clone(), i % 2 == 1, seen.clone())))
        .collect();
    // They are all in before the payments start.
    eventually(Duration::from_secs(30), "the attackers connect", || {
        let seen = seen.clone();
        async move { seen.opened.load(Ordering::Relaxed) == 1_100 }
    })
    .await;

    // Meanwhile a checkout pays: created through the API, paid on the PSP's page, and the PSP's
    // webhook received (the sandbox retries it as a PSP does).
    let deadline = Instant::now() + Duration::from_secs(90);
    let health = insist("healthz", deadline, || {
        http.get(format!("{base_url}/healthz"))
    })
    .await;
    assert_eq!(health.status(), StatusCode::OK);
    let mut paid = Vec::new();
    for i in 0..3 {
        let body = checkout(&format!("chk_limits_{i}"));
        let created = insist("POST /v1/payments", deadline, || {
            http.post(format!("{base_url}/v1/payments"))
                .bearer_auth(&api_key)
                .header("Idempotency-Key", format!("limits-{i}"))
                .json(&body)
        })
        .await;
        assert_eq!(created.status(), StatusCode::CREATED);
        let payment: Value = created.json().await.unwrap();
        let url = payment["redirect_url"].as_str().unwrap().to_owned();
        let form = [
            ("card_number", CARD_OK),
            ("exp", "12/39"),
            ("cvc", "123"),
            ("name", "Ada"),
        ];
        let paid_at_psp = insist("the hosted page", deadline, || http.post(&url).form(&form)).await;
        assert!(
            paid_at_psp.status().is_redirection(),
            "{}",
            paid_at_psp.status()
        );
        paid.push(payment["id"].as_str().unwrap().to_owned());
    }
    for id in &paid {
        loop {
            let shown = insist("GET /v1/payments/{id}", deadline, || {
                http.get(format!("{base_url}/v1/payments/{id}"))
                    .bearer_auth(&api_key)
            })
            .await;
            let payment: Value = shown.json().await.unwrap();
            if payment["status"] == "succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} not succeeded: {payment}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Every attacker was let go within the deadlines (plus slack for a loaded machine); the
    // trickled bodies were answered 408, and connections past the cap were answered 503 or
    // closed.
    let mut longest = Duration::ZERO;
    for attacker in attackers {
        let held = tokio::time::timeout(Duration::from_secs(60), attacker)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server let every connection go: opened {}, idle closed {}, closed {}, 408 {}, 503 {}",
                    seen.opened.load(Ordering::Relaxed),
                    seen.idle_closed.load(Ordering::Relaxed),
                    seen.closed.load(Ordering::Relaxed),
                    seen.timed_out.load(Ordering::Relaxed),
                    seen.busy.load(Ordering::Relaxed)
                )
            })
            .unwrap();
        longest = longest.max(held);
    }
    assert_eq!(seen.closed.load(Ordering::Relaxed), 1_100);
    assert!(seen.timed_out.load(Ordering::Relaxed) > 0, "no 408");
    assert!(
        longest < Duration::from_secs(30),
        "a connection was held {longest:?}"
    );
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server is still up; its log: {log:?}"
    );
    let health = http
        .get(format!("{base_url}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let (code, stdout, stderr) = run_cli(&["ledger", "verify", "--database-url", &test_db.url]);
    assert_eq!(code, 0, "{stdout} {stderr}");
    println!(
        "limits: 1100 held; 408 {}, 503 {}, longest held {longest:?}",
        seen.timed_out.load(Ordering::Relaxed),
        seen.busy.load(Ordering::Relaxed)
    );
    drop(server);
    let _ = std::fs::remove_file(&log);
}

db_test!(
    each_api_key_has_its_rate_and_429_says_when_to_come_back,
    requests_past_the_in_flight_cap_are_503_and_health_is_answered,
    a_thousand_slow_connections_under_1024_descriptors_do_not_stop_payments,
);
